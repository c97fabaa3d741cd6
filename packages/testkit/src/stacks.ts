/**
 * Non-Node upstream stacks for the differential suite (./differential.ts), each routing with its
 * OWN router: Go net/http ServeMux (Debian's golang, built once per run into a temp dir) and
 * Python Flask/Werkzeug (Debian's python3-flask under /usr/bin/python3). Every handler answers
 * the `HandlerReply` JSON: the route id it implements, the effective method, the
 * X-TrustPlane-Subject and X-Tenant values its framework gives the app, and the parsed query.
 * Each records the X-Request-Id of every request that reaches it, served on GET /__seen (that
 * path is no route of the policy, so only the test itself reaches it, directly).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

export interface UpstreamStack {
  readonly name: string;
  readonly port: number;
  /** X-Request-Id of every request that reached the app ('' when it had none), in order. */
  seen(): Promise<string[]>;
  close(): Promise<void>;
}

export const GO_UPSTREAM_SOURCE = `package main

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
)

var (
	mu   sync.Mutex
	seen = []string{}
)

// Header bytes as latin-1 code points, as node:http and WSGI give them (json.Marshal would turn
// invalid UTF-8 into U+FFFD).
func latin1(s string) string {
	rs := make([]rune, len(s))
	for i := 0; i < len(s); i++ {
		rs[i] = rune(s[i])
	}
	return string(rs)
}

func first(h http.Header, name string) interface{} {
	v := h.Values(name)
	if len(v) == 0 {
		return nil
	}
	return latin1(v[0])
}

func write(w http.ResponseWriter, r *http.Request, handler string) {
	q := [][2]string{}
	for k, vs := range r.URL.Query() {
		for _, v := range vs {
			q = append(q, [2]string{k, v})
		}
	}
	sort.Slice(q, func(i, j int) bool {
		if q[i][0] != q[j][0] {
			return q[i][0] < q[j][0]
		}
		return q[i][1] < q[j][1]
	})
	body, _ := json.Marshal(map[string]interface{}{
		"handler": handler, "method": r.Method,
		"subject": first(r.Header, "X-TrustPlane-Subject"), "tenant": first(r.Header, "X-Tenant"), "query": q,
	})
	w.Header().Set("Content-Type", "application/json")
	w.Write(body)
}

func main() {
	mux := http.NewServeMux()
	mux.HandleFunc("/v1/orders/search", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != "GET" {
			http.Error(w, "method", 405)
			return
		}
		write(w, r, "orders.search")
	})
	mux.HandleFunc("/v1/orders/", func(w http.ResponseWriter, r *http.Request) {
		rest := strings.TrimPrefix(r.URL.Path, "/v1/orders/")
		if rest == "" || strings.Contains(rest, "/") {
			http.NotFound(w, r)
			return
		}
		switch r.Method {
		case "GET":
			write(w, r, "orders.get")
		case "DELETE":
			write(w, r, "orders.delete")
		default:
			http.Error(w, "method", 405)
		}
	})
	mux.HandleFunc("/v1/orders", func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case "GET":
			write(w, r, "orders.list")
		case "POST":
			write(w, r, "orders.create")
		case "DELETE":
			write(w, r, "orders.delete_all")
		default:
			http.Error(w, "method", 405)
		}
	})
	root := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/__seen" {
			mu.Lock()
			body, _ := json.Marshal(seen)
			mu.Unlock()
			w.Header().Set("Content-Type", "application/json")
			w.Write(body)
			return
		}
		mu.Lock()
		seen = append(seen, r.Header.Get("X-Request-Id"))
		mu.Unlock()
		mux.ServeHTTP(w, r)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println(ln.Addr().(*net.TCPAddr).Port)
	http.Serve(ln, root)
}
`;

export const FLASK_UPSTREAM_SOURCE = `import json, logging, sys, threading
from flask import Flask, request, jsonify
from werkzeug.serving import make_server

app = Flask(__name__)
seen = []
lock = threading.Lock()

def reply(handler):
    q = sorted([k, v] for k, v in request.args.items(multi=True))
    return jsonify(handler=handler, method=request.method, subject=request.headers.get('X-TrustPlane-Subject'),
                   tenant=request.headers.get('X-Tenant'), query=q)

@app.get('/v1/orders/search')
def search(): return reply('orders.search')

@app.get('/v1/orders/<order_id>')
def get(order_id): return reply('orders.get')

@app.delete('/v1/orders/<order_id>')
def delete(order_id): return reply('orders.delete')

@app.get('/v1/orders')
def list_(): return reply('orders.list')

@app.post('/v1/orders')
def create(): return reply('orders.create')

@app.delete('/v1/orders')
def delete_all(): return reply('orders.delete_all')

class HTTPMethodOverrideMiddleware:
    """The Flask documentation's method-override pattern (X-HTTP-Method-Override)."""
    allowed_methods = frozenset(['GET', 'HEAD', 'POST', 'DELETE', 'PUT', 'PATCH', 'OPTIONS'])
    bodyless_methods = frozenset(['GET', 'HEAD', 'OPTIONS', 'DELETE'])
    def __init__(self, app): self.app = app
    def __call__(self, environ, start_response):
        method = environ.get('HTTP_X_HTTP_METHOD_OVERRIDE', '').upper()
        if method in self.allowed_methods:
            environ['REQUEST_METHOD'] = method
        if method in self.bodyless_methods:
            environ['CONTENT_LENGTH'] = '0'
        return self.app(environ, start_response)

class Recorder:
    def __init__(self, app): self.app = app
    def __call__(self, environ, start_response):
        if environ.get('PATH_INFO') == '/__seen':
            with lock: body = json.dumps(seen).encode()
            start_response('200 OK', [('Content-Type', 'application/json'), ('Content-Length', str(len(body)))])
            return [body]
        with lock: seen.append(environ.get('HTTP_X_REQUEST_ID', ''))
        return self.app(environ, start_response)

app.wsgi_app = Recorder(HTTPMethodOverrideMiddleware(app.wsgi_app))
logging.getLogger('werkzeug').setLevel(logging.ERROR)
srv = make_server('127.0.0.1', 0, app, threaded=True)
print(srv.server_port, flush=True)
srv.serve_forever()
`;

/** Whether a tool runs here. In CI it must: the suite fails loudly instead of skipping. */
export function requireTool(cmd: string, args: readonly string[], what: string): void {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${what} is required for the differential suite (${cmd} ${args.join(' ')} failed: ${r.error?.message ?? r.stderr}); .ci/run installs it`);
}

async function fetchSeen(port: number): Promise<string[]> {
  const res = await fetch(`http://127.0.0.1:${port}/__seen`);
  if (!res.ok) throw new Error(`/__seen answered ${res.status}`);
  return (await res.json()) as string[];
}

/** Spawn a server that prints its port on the first stdout line; bounded wait. */
function spawnPrintingPort(name: string, cmd: string, args: readonly string[], cleanup: () => void, timeoutMs = 15_000): Promise<UpstreamStack> {
  const child: ChildProcess = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => {
    if (stderr.length < 4000) stderr += d.toString();
  });
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  return new Promise<UpstreamStack>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${name} did not print its port within ${timeoutMs} ms: ${stderr}`));
    }, timeoutMs);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${name} exited (${code}) before listening: ${stderr}`));
    });
    const rl = createInterface({ input: child.stdout! });
    rl.once('line', (line) => {
      clearTimeout(timer);
      const port = Number(line.trim());
      if (!Number.isInteger(port) || port <= 0) return reject(new Error(`${name} printed ${JSON.stringify(line)}, not a port`));
      resolve({
        name,
        port,
        seen: () => fetchSeen(port),
        close: async () => {
          rl.close();
          if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
          await exited;
          cleanup();
        },
      });
    });
  });
}

let goBinary: Promise<{ dir: string; bin: string }> | undefined;

/** Build the Go upstream once per process (a few seconds with Debian's precompiled stdlib). */
function buildGoUpstream(): Promise<{ dir: string; bin: string }> {
  goBinary ??= new Promise((resolve, reject) => {
    const dir = mkdtempSync(join(tmpdir(), 'tp-diff-go-'));
    writeFileSync(join(dir, 'main.go'), GO_UPSTREAM_SOURCE);
    const bin = join(dir, 'upstream');
    const env = { ...process.env, GOFLAGS: '', GO111MODULE: 'off', GOCACHE: process.env['GOCACHE'] ?? join(tmpdir(), 'tp-diff-gocache') };
    const child = spawn('go', ['build', '-o', bin, 'main.go'], { cwd: dir, env, stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.once('error', reject);
    child.once('exit', (code) => (code === 0 ? resolve({ dir, bin }) : reject(new Error(`go build failed (${code}): ${err}`))));
    process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
  });
  return goBinary;
}

export async function startGoUpstream(): Promise<UpstreamStack> {
  requireTool('go', ['version'], 'Go (Debian golang-go)');
  const { bin } = await buildGoUpstream();
  return spawnPrintingPort('go net/http', bin, [], () => undefined);
}

export const DEBIAN_PYTHON = '/usr/bin/python3';

export async function startFlaskUpstream(): Promise<UpstreamStack> {
  requireTool(DEBIAN_PYTHON, ['-c', 'import flask'], "Debian's python3-flask");
  const dir = mkdtempSync(join(tmpdir(), 'tp-diff-flask-'));
  const file = join(dir, 'app.py');
  writeFileSync(file, FLASK_UPSTREAM_SOURCE);
  return spawnPrintingPort('flask/werkzeug', DEBIAN_PYTHON, [file], () => rmSync(dir, { recursive: true, force: true }));
}
