package dynamo

// SetListBudget lowers how many jobs one List reads when it filters, so
// that a test can reach the end of the budget with a few jobs.
func SetListBudget(s *Store, batch, queries int) { s.listBatch, s.listQueries = batch, queries }
