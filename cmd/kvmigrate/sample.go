package main

import (
	"fmt"
	"strconv"

	"github.com/spf13/cobra"
	"github.com/valkey-io/valkey-go"

	"github.com/kvmigrate/kvmigrate/internal/endpoint"
	"github.com/kvmigrate/kvmigrate/internal/sample"
)

func (a *app) sampleCmd() *cobra.Command {
	var (
		target  string
		opts    sample.Options
		strings int
	)
	cmd := &cobra.Command{
		Use:   "sample --target URL",
		Short: "Write sample data of every type (binary names and values, TTLs, big keys) to try kvmigrate on",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			e, err := parseEndpoint("target", target, "KVMIGRATE_TARGET_PASSWORD")
			if err != nil {
				return err
			}
			conn, err := endpoint.Dial(cmd.Context(), e)
			if err != nil {
				return err
			}
			defer conn.Close()
			c, err := conn.Client(e.DB)
			if err != nil {
				return err
			}
			n, err := sample.Seed(cmd.Context(), c, opts)
			if err != nil {
				return fmt.Errorf("seed %s: %w", e, err)
			}
			if strings > 0 {
				if err := seedStrings(cmd, c, opts.Prefix, strings); err != nil {
					return err
				}
				n += strings
			}
			fmt.Fprintf(a.out, "wrote %d keys to %s\n", n, e)
			return nil
		},
	}
	cmd.Flags().StringVar(&target, "target", "", "server to write to")
	cmd.Flags().StringVar(&opts.Prefix, "prefix", "sample:", "key name prefix")
	cmd.Flags().IntVar(&opts.PerType, "per-type", 5, "keys of each type, with and without TTL")
	cmd.Flags().BoolVar(&opts.Big, "big", false, "add big keys: 200k-field hash, 500k-element list, 50k set and sorted set, 20k-entry stream")
	cmd.Flags().IntVar(&opts.BigScale, "big-scale", 1, "divide the big key sizes by this")
	cmd.Flags().IntVar(&strings, "strings", 0, "add this many small strings (for benchmarks)")
	return cmd
}

// seedStrings writes n 32-byte strings in pipelines of 1000.
func seedStrings(cmd *cobra.Command, c valkey.Client, prefix string, n int) error {
	val := "0123456789abcdef0123456789abcdef"
	cmds := make(valkey.Commands, 0, 1000)
	for i := 0; i < n; i++ {
		cmds = append(cmds, c.B().Set().Key(prefix+"str:"+strconv.Itoa(i)).Value(val).Build())
		if len(cmds) == cap(cmds) || i == n-1 {
			for _, r := range c.DoMulti(cmd.Context(), cmds...) {
				if err := r.Error(); err != nil {
					return err
				}
			}
			cmds = cmds[:0]
		}
	}
	return nil
}
