module github.com/kvmigrate/kvmigrate

go 1.26.0

require (
	github.com/stretchr/testify v1.11.1
	github.com/valkey-io/valkey-go v1.0.79
	go.etcd.io/bbolt v1.4.3
	golang.org/x/time v0.14.0
)

require (
	github.com/davecgh/go-spew v1.1.1 // indirect
	github.com/pmezard/go-difflib v1.0.0 // indirect
	golang.org/x/sync v0.13.0 // indirect
	golang.org/x/sys v0.48.0 // indirect
	gopkg.in/yaml.v3 v3.0.1 // indirect
)
