package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/spf13/cobra"

	"github.com/kvmigrate/kvmigrate/internal/api"
	"github.com/kvmigrate/kvmigrate/internal/lambdafn"
)

// shutdownTimeout bounds the wait for requests in flight at shutdown.
const shutdownTimeout = 10 * time.Second

func (a *app) serveCmd() *cobra.Command {
	var addr, secretsFile string
	cmd := &cobra.Command{
		Use:   "serve [--addr 127.0.0.1:8080] [--secrets FILE]",
		Short: "Serve the HTTP API locally; jobs run in this process",
		Long: `Serve kvmigrate's HTTP API (the AWS application's routes: POST /analyses,
GET /analyses/{id}, POST /migrations, GET /migrations, GET /migrations/{id},
POST /migrations/{id}/stop, POST /migrations/{id}/validations) on a local
address. Jobs run in this process with the local workflow (command mode)
and are kept in the job store, as those of kvmigrate run.

Requests never carry passwords: an endpoint that needs credentials names a
secret ("secretArn"), which --secrets resolves from a JSON file
{"<secret ARN>": {"username": "...", "password": "..."}}.

The API has no authentication: keep it on a loopback address. Ctrl-C stops
the server; migrations still copying are left paused (kvmigrate resume).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			secrets := lambdafn.StaticSecrets{}
			if secretsFile != "" {
				var err error
				if secrets, err = lambdafn.LoadStaticSecrets(secretsFile); err != nil {
					return usageError{fmt.Errorf("--secrets: %w", err)}
				}
			}
			store, err := a.openStore()
			if err != nil {
				return err
			}
			defer store.Close()
			log := a.logger()
			executions := api.NewLocalExecutions(store, secrets, log)
			defer executions.Close()
			h, err := api.New(api.Config{
				Store:      store,
				Executions: executions,
				Revalidate: lambdafn.Revalidate(lambdafn.Deps{Store: store, Secrets: secrets, Log: log}),
				Log:        log,
			})
			if err != nil {
				return err
			}
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				return usageError{fmt.Errorf("--addr: %w", err)}
			}
			fmt.Fprintf(a.out, "kvmigrate API on http://%s (jobs in %s); Ctrl-C to stop\n", ln.Addr(), store.Path())
			srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
			served := make(chan error, 1)
			go func() { served <- srv.Serve(ln) }()
			select {
			case err := <-served:
				return err
			case <-cmd.Context().Done():
			}
			ctx, cancel := context.WithTimeout(context.WithoutCancel(cmd.Context()), shutdownTimeout)
			defer cancel()
			err = srv.Shutdown(ctx)
			if serr := <-served; !errors.Is(serr, http.ErrServerClosed) && err == nil {
				err = serr
			}
			return err
		},
	}
	cmd.Flags().StringVar(&addr, "addr", "127.0.0.1:8080", "address to listen on")
	cmd.Flags().StringVar(&secretsFile, "secrets", "", `JSON file of endpoint credentials by secret ARN: {"<arn>": {"username": "...", "password": "..."}}`)
	return cmd
}
