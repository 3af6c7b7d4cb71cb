package workflow

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/kvmigrate/kvmigrate/internal/job"
)

// The control socket of a local run. The local job store (job/bolt) is
// held, and locked, by the one kvmigrate process that runs jobs from it, so
// another process (kvmigrate cutover JOB, from another terminal) cannot
// write a request into the job record itself. It asks that process over a
// Unix socket next to the store file instead; the process writes the
// request into the record (RequestCutover, RequestStop), where its run
// finds it, and answers with the job as it ends.

// ErrNoProcess: no kvmigrate process serves the control socket (none runs
// jobs from that store, or the one that does takes no requests).
var ErrNoProcess = errors.New("no kvmigrate process takes requests for this job store")

// ControlPath is the control socket of the job store file storePath.
func ControlPath(storePath string) string { return storePath + ".ctl" }

// maxSocketPath is the longest path a Unix socket can have (sun_path).
const maxSocketPath = 107

const (
	controlPoll       = 100 * time.Millisecond
	controlReadLimit  = 4 << 10
	controlRequestTTL = 10 * time.Second
)

// ControlServer answers requests on a control socket.
type ControlServer struct {
	ln      net.Listener
	path    string
	store   job.Store
	log     *slog.Logger
	closing chan struct{}
	once    sync.Once
	wg      sync.WaitGroup
}

type controlRequest struct {
	Job     string `json:"job"`
	Request string `json:"request"`
	Force   bool   `json:"force,omitempty"`
	Wait    bool   `json:"wait,omitempty"`
}

type controlReply struct {
	Job   *job.Job `json:"job,omitempty"`
	Error string   `json:"error,omitempty"`
	// Kind classifies Error: not_found, conflict, not_ready, invalid.
	Kind  string `json:"kind,omitempty"`
	Final bool   `json:"final,omitempty"`
}

// ListenControl serves the control socket at path for the jobs of store.
// The caller must hold store exclusively (the bbolt file lock): a socket
// file found at path is then left over from a process that is gone, and is
// replaced. The socket is private to the user (0600).
func ListenControl(path string, store job.Store, log *slog.Logger) (*ControlServer, error) {
	if len(path) > maxSocketPath {
		return nil, fmt.Errorf("control socket %s: the path is longer than %d bytes (move the job store to a shorter path)", path, maxSocketPath)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != fs.ModeSocket {
			return nil, fmt.Errorf("control socket %s: a file that is not a socket is in the way", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("control socket %s: remove the stale one: %w", path, err)
		}
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("control socket: %w", err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &ControlServer{ln: ln, path: path, store: store, log: log, closing: make(chan struct{})}
	s.wg.Go(s.accept)
	return s, nil
}

// Close stops accepting requests, gives the requests that wait for their
// job its current record, and removes the socket.
func (s *ControlServer) Close() error {
	var err error
	s.once.Do(func() {
		close(s.closing)
		err = s.ln.Close()
		s.wg.Wait()
	})
	return err
}

func (s *ControlServer) accept() {
	for {
		conn, err := s.ln.Accept()
		if err != nil {
			select {
			case <-s.closing:
			default:
				s.log.Warn("control socket", "err", err)
			}
			return
		}
		s.wg.Go(func() { s.handle(conn) })
	}
}

func (s *ControlServer) handle(conn net.Conn) {
	defer conn.Close()
	enc := json.NewEncoder(conn)
	reply := func(r controlReply) bool {
		_ = conn.SetWriteDeadline(time.Now().Add(controlRequestTTL))
		return enc.Encode(r) == nil
	}
	_ = conn.SetReadDeadline(time.Now().Add(controlRequestTTL))
	var req controlRequest
	if err := json.NewDecoder(io.LimitReader(conn, controlReadLimit)).Decode(&req); err != nil {
		reply(controlReply{Error: "malformed request", Kind: "invalid"})
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), controlRequestTTL)
	defer cancel()
	var (
		j   job.Job
		err error
	)
	switch {
	case !job.ValidID(req.Job):
		err = fmt.Errorf("%q is not a job id: %w", req.Job, job.ErrInvalid)
	case req.Request == job.RequestCutover:
		j, err = RequestCutover(ctx, s.store, req.Job, req.Force)
	case req.Request == job.RequestStop:
		j, err = RequestStop(ctx, s.store, req.Job)
	default:
		err = fmt.Errorf("unknown request %q: %w", req.Request, job.ErrInvalid)
	}
	if err != nil {
		reply(controlReply{Error: err.Error(), Kind: errorKind(err)})
		return
	}
	s.log.Info("request accepted on the control socket", "job", j.ID, "request", req.Request, "force", req.Force)
	if !reply(controlReply{Job: &j}) || !req.Wait {
		return
	}
	tick := time.NewTicker(controlPoll)
	defer tick.Stop()
	for {
		closing := false
		select {
		case <-s.closing:
			closing = true
		case <-tick.C:
		}
		cur, err := s.store.Get(context.Background(), j.ID)
		if err != nil {
			reply(controlReply{Error: err.Error(), Kind: errorKind(err)})
			return
		}
		if cur.Finished() || closing {
			reply(controlReply{Job: &cur, Final: cur.Finished()})
			return
		}
	}
}

func errorKind(err error) string {
	switch {
	case errors.Is(err, job.ErrNotFound):
		return "not_found"
	case errors.Is(err, ErrNotReady):
		return "not_ready"
	case errors.Is(err, job.ErrConflict):
		return "conflict"
	case errors.Is(err, job.ErrInvalid):
		return "invalid"
	}
	return ""
}

// remoteError is an error the serving process returned; it matches the
// sentinel of its kind (errors.Is).
type remoteError struct {
	msg  string
	kind string
}

func (e *remoteError) Error() string { return e.msg }

func (e *remoteError) Unwrap() []error {
	switch e.kind {
	case "not_found":
		return []error{job.ErrNotFound}
	case "not_ready":
		return []error{ErrNotReady, job.ErrConflict}
	case "conflict":
		return []error{job.ErrConflict}
	case "invalid":
		return []error{job.ErrInvalid}
	}
	return nil
}

// SendRequest asks the process serving the control socket at path to
// apply req (job.RequestCutover, with force as in RequestCutover, or
// job.RequestStop) to job id. It returns once the request is accepted; with
// wait, accepted (if not nil) is called then and SendRequest returns the
// job as it ended. ErrNoProcess when nothing serves the socket; the
// serving process's refusals match job.ErrNotFound, job.ErrConflict,
// ErrNotReady or job.ErrInvalid.
func SendRequest(ctx context.Context, path, id, req string, force, wait bool, accepted func(job.Job)) (job.Job, error) {
	var d net.Dialer
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	conn, err := d.DialContext(dctx, "unix", path)
	cancel()
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ECONNREFUSED) {
			return job.Job{}, fmt.Errorf("%w (no socket at %s)", ErrNoProcess, path)
		}
		return job.Job{}, fmt.Errorf("control socket %s: %w", path, err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	if err := json.NewEncoder(conn).Encode(controlRequest{Job: id, Request: req, Force: force, Wait: wait}); err != nil {
		return job.Job{}, fmt.Errorf("control socket %s: %w", path, err)
	}
	dec := json.NewDecoder(bufio.NewReader(conn))
	read := func() (job.Job, bool, error) {
		var r controlReply
		if err := dec.Decode(&r); err != nil {
			if ctx.Err() != nil {
				return job.Job{}, false, ctx.Err()
			}
			return job.Job{}, false, fmt.Errorf("control socket %s: the kvmigrate process did not answer: %w", path, err)
		}
		if r.Error != "" {
			return job.Job{}, false, &remoteError{msg: r.Error, kind: r.Kind}
		}
		if r.Job == nil {
			return job.Job{}, false, fmt.Errorf("control socket %s: an answer without a job", path)
		}
		return *r.Job, r.Final, nil
	}
	j, _, err := read()
	if err != nil || !wait {
		return j, err
	}
	if accepted != nil {
		accepted(j)
	}
	j, final, err := read()
	if err == nil && !final {
		err = fmt.Errorf("job %s is still %s: the kvmigrate process that runs it stopped taking requests", j.ID, j.Status)
	}
	return j, err
}
