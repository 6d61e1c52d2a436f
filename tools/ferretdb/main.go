// Command ferretdb runs FerretDB 1.x through its embeddable package, on PostgreSQL
// (--postgresql-url, what scripts/infra starts) or on SQLite (--sqlite-url, kept to compare the two).
//
// The upstream cmd/ferretdb, built outside FerretDB's own repository, panics at start on its
// missing generated version file; the embeddable package has no such check.
package main

import (
	"context"
	"flag"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/FerretDB/FerretDB/ferretdb"
)

func main() {
	listen := flag.String("listen-addr", "127.0.0.1:27017", "TCP address to listen on")
	postgresqlURL := flag.String("postgresql-url", "", "PostgreSQL URL, e.g. postgres://ferretdb@127.0.0.1:15432/ferretdb")
	sqliteURL := flag.String("sqlite-url", "", "SQLite directory URL (file: scheme, trailing slash)")
	level := flag.String("log-level", "warn", "debug, info, warn or error")
	flag.Parse()

	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(*level)); err != nil {
		slog.Error("bad log level", "error", err)
		os.Exit(2)
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))

	config := ferretdb.Config{Listener: ferretdb.ListenerConfig{TCP: *listen}, Logger: logger}
	switch {
	case *postgresqlURL != "" && *sqliteURL == "":
		config.Handler, config.PostgreSQLURL = "postgresql", *postgresqlURL
	case *sqliteURL != "" && *postgresqlURL == "":
		config.Handler, config.SQLiteURL = "sqlite", *sqliteURL
	default:
		logger.Error("give exactly one of --postgresql-url and --sqlite-url")
		os.Exit(2)
	}

	f, err := ferretdb.New(&config)
	if err != nil {
		logger.Error("cannot start", "error", err)
		os.Exit(1)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	logger.Info("listening", "addr", *listen, "handler", config.Handler)
	if err := f.Run(ctx); err != nil {
		logger.Error("stopped", "error", err)
		os.Exit(1)
	}
}
