package peers

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/template"
)

// Nginx is an nginx instance living in a private prefix directory.
type Nginx struct {
	// Prefix is the absolute directory that holds the configuration, the
	// pid file and the temporary paths. It must exist before Write.
	Prefix string
	// Addr is the loopback address to listen on, e.g. "127.0.0.1:8080".
	Addr string
	// Workers is worker_processes, 1 to 64.
	Workers int
	// Daemon runs the master in the background (daemon on). A foreground
	// master (the default) stays the child of whoever started it; nginx
	// then refuses a binary upgrade (SIGUSR2), because its parent never
	// changes.
	Daemon bool
	// H2C makes the port speak cleartext HTTP/2 (prior knowledge) only:
	// nginx's "listen … http2" without TLS.
	H2C bool
	// Stream, if set, is the body served at /stream at 100 bytes a
	// second (limit_rate): a slow answer that a reload must let finish.
	// Plain text: no quote, backslash or "$".
	Stream string
}

// ConfPath is the configuration file Write creates.
func (n Nginx) ConfPath() string { return filepath.Join(n.Prefix, "nginx.conf") }

// PidPath is the pid file of the master; during a binary upgrade the old
// master's is PidPath()+".oldbin".
func (n Nginx) PidPath() string { return filepath.Join(n.Prefix, "nginx.pid") }

// Args returns nginx's command-line arguments for this instance: the
// prefix, the configuration, and the early error log on stderr. Append
// "-s", "reload" to signal the running master.
func (n Nginx) Args() []string {
	return []string{"-p", n.Prefix + "/", "-c", n.ConfPath(), "-e", "stderr"}
}

var nginxConf = template.Must(template.New("nginx.conf").Parse(`# Written by handoff's bench/peers: a static 200 on a loopback port.
daemon {{if .Daemon}}on{{else}}off{{end}};
master_process on;
worker_processes {{.Workers}};
pid "{{.Pid}}";
error_log stderr notice;

events {
    worker_connections 1024;
}

http {
    access_log off;
    # Keep connections as long as the Go servers do; the default (1000
    # requests) would close each a few times per second under load.
    keepalive_requests 1000000;
    keepalive_timeout 75s;
    client_body_temp_path "{{.Temp}}/body";
    proxy_temp_path "{{.Temp}}/proxy";
    fastcgi_temp_path "{{.Temp}}/fastcgi";
    uwsgi_temp_path "{{.Temp}}/uwsgi";
    scgi_temp_path "{{.Temp}}/scgi";

    server {
        listen {{.Addr}}{{if .H2C}} http2{{end}};
{{- if .Stream}}
        location = /stream {
            default_type text/plain;
            limit_rate 100;
            return 200 "{{.Stream}}";
        }
{{- end}}
        location / {
            default_type text/plain;
            add_header X-Worker-Pid $pid always;
            add_header X-Generation 0 always;
            add_header X-Version peer always;
            return 200 "hello from worker $pid (generation 0)\n";
        }
    }
}
`))

// Config returns the configuration file's text, or an error naming the
// parameter that is wrong.
func (n Nginx) Config() (string, error) {
	if err := checkDir("nginx prefix", n.Prefix); err != nil {
		return "", err
	}
	addr, err := checkAddr(n.Addr)
	if err != nil {
		return "", err
	}
	if strings.ContainsAny(n.Stream, "\"\\$") {
		return "", fmt.Errorf("peers: nginx stream body %.40q holds a quote, a backslash or a $", n.Stream)
	}
	if n.Workers < 1 || n.Workers > 64 {
		return "", fmt.Errorf("peers: nginx workers %d out of range [1, 64]", n.Workers)
	}
	var b strings.Builder
	err = nginxConf.Execute(&b, struct {
		Daemon    bool
		Workers   int
		Pid, Temp string
		Addr      string
		H2C       bool
		Stream    string
	}{n.Daemon, n.Workers, n.PidPath(), filepath.Join(n.Prefix, "temp"), addr, n.H2C, strings.ReplaceAll(n.Stream, "\n", `\n`)})
	return b.String(), err
}

// Write writes the configuration to ConfPath and creates the temporary
// directories under the prefix.
func (n Nginx) Write() error {
	conf, err := n.Config()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(n.Prefix, "temp"), 0o755); err != nil {
		return fmt.Errorf("peers: %w", err)
	}
	if err := os.WriteFile(n.ConfPath(), []byte(conf), 0o644); err != nil {
		return fmt.Errorf("peers: %w", err)
	}
	return nil
}
