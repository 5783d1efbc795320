// lokipush ships the lines of stdin to a Loki push endpoint with Grafana's Go client
// (github.com/grafana/loki-client-go, the client Promtail was built on): snappy-compressed
// protobuf, batching, retries. It exits 1 when the client gave a batch up. Used by
// tests/test_ingest_loki.py as a real protobuf shipper.
//
//	lokipush -url http://host/loki/api/v1/push -labels job=x,host=y -user u < lines
//	(the password, a LaaS ingest key, in $LOKI_PASSWORD)
package main

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/grafana/loki-client-go/loki"
	"github.com/prometheus/common/config"
	"github.com/prometheus/common/model"
)

// failures counts the client's error-level log lines (a batch given up, an encoding error).
type failures struct{ n atomic.Int64 }

func (f *failures) Log(keyvals ...interface{}) error {
	line := fmt.Sprintln(keyvals...)
	if strings.Contains(line, "level error") || strings.Contains(line, "error") && strings.Contains(line, "final") {
		f.n.Add(1)
	}
	fmt.Fprint(os.Stderr, line)
	return nil
}

func main() {
	url := flag.String("url", "", "the push URL")
	labels := flag.String("labels", "", "stream labels: name=value,name=value")
	user := flag.String("user", "lokipush", "basic-auth user (the password is $LOKI_PASSWORD)")
	flag.Parse()
	cfg, err := loki.NewDefaultConfig(*url)
	if err != nil {
		fmt.Fprintln(os.Stderr, "lokipush:", err)
		os.Exit(2)
	}
	cfg.BatchWait = 100 * time.Millisecond
	cfg.BackoffConfig.MaxRetries = 3
	cfg.BackoffConfig.MaxBackoff = 2 * time.Second
	cfg.Client.BasicAuth = &config.BasicAuth{Username: *user,
		Password: config.Secret(os.Getenv("LOKI_PASSWORD"))}
	set := model.LabelSet{}
	for _, pair := range strings.Split(*labels, ",") {
		if name, value, ok := strings.Cut(pair, "="); ok {
			set[model.LabelName(name)] = model.LabelValue(value)
		}
	}
	logger := &failures{}
	client, err := loki.NewWithLogger(cfg, logger)
	if err != nil {
		fmt.Fprintln(os.Stderr, "lokipush:", err)
		os.Exit(2)
	}
	scanner := bufio.NewScanner(os.Stdin)
	for scanner.Scan() {
		if err := client.Handle(set, time.Now(), scanner.Text()); err != nil {
			fmt.Fprintln(os.Stderr, "lokipush:", err)
			os.Exit(1)
		}
	}
	client.Stop()
	if logger.n.Load() > 0 {
		os.Exit(1)
	}
}
