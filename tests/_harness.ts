/**
 * The shared test harness: a bounded run of `main()` with injected edges (fetch, opener, clock,
 * sleep, stdin lines, platform, `.env` files, storage), raw TCP and HTTP helpers for the callback
 * server, tiny servers the mock issuer cannot be, and the checks every case makes (no secret
 * printed, no raw control character on the terminal, nothing written to the cache directory).
 *
 * @module
 */
import { type Deps, fileStorage, main, type Storage } from "../login.ts";
import { type BrowserVisit, scriptedBrowser, type ServedMock, serveMockIssuer } from "./mock_issuer.ts";
import { assert, assertEquals } from "./assert.ts";

// ── Bounds ──────────────────────────────────────────────────────────────────────────────────────

/** No hostile case may keep `main()` running longer than this. */
export const BOUND_MS = 5_000;

/** A timer promise that can be cancelled; used only as an upper bound, never to wait for something. */
export function bound(ms: number): { done: Promise<"late">; cancel: () => void } {
  let id: ReturnType<typeof setTimeout> | undefined;
  const done = new Promise<"late">((resolve) => id = setTimeout(() => resolve("late"), ms));
  return { done, cancel: () => clearTimeout(id) };
}

/** Resolves with `promise`, or rejects when it takes longer than `ms`. */
export async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  const limit = bound(ms);
  try {
    const first = await Promise.race([promise, limit.done]);
    if (first === "late") throw new Error(`${what} took longer than ${ms} ms`);
    return first as T;
  } finally {
    limit.cancel();
  }
}

/** A promise with its resolver, for events between the pieces of a case. */
export function signal<T = void>(): { promise: Promise<T>; resolve: (value: T) => void; fired: () => boolean } {
  let fired = false;
  const { promise, resolve } = Promise.withResolvers<T>();
  return {
    promise,
    resolve: (value) => {
      fired = true;
      resolve(value);
    },
    fired: () => fired,
  };
}

// ── Running the CLI ─────────────────────────────────────────────────────────────────────────────

export interface Run {
  code: number;
  stdout: string;
  /** Everything written to stdout, as bytes (`stdout` is its text). */
  stdoutBytes: Uint8Array;
  stderr: string;
  /** What the injected opener was asked to open. */
  opened: string[];
  /** What the browser script returned. */
  visit?: BrowserVisit;
  /** How long `main()` ran. */
  ms: number;
  /** The temporary home handed to the run; the token cache is its `cache` directory. */
  home: string;
}

export interface RunOptions {
  /** Plays the browser once the opener is called; its failure fails the case (and ends the login). */
  browser?: (start: string) => Promise<BrowserVisit | undefined>;
  /** Replaces the whole opener (then `browser` is not called by the opener). */
  openUrl?: (url: string) => Promise<void>;
  fetch?: typeof fetch;
  controller?: AbortController;
  env?: Record<string, string>;
  /** Called when `main()` overruns its bound, before the signal is aborted: release any gates here. */
  onOverrun?: () => void;
  boundMs?: number;
  /** Sees every stderr write as it happens. */
  onStderr?: (text: string) => void;
  /** The token cache; by default `fileStorage` on `<home>/cache`. */
  storage?: (home: string) => Storage;
  /** Reuse the home (and so the cache) of an earlier run. */
  home?: string;
  /** The clock (milliseconds since the epoch); the real one by default. */
  now?: () => number;
  /** Replaces waiting (device-flow pauses, back-offs); by default any wait fails the case. */
  sleep?: (ms: number) => Promise<void>;
  /** What the person types on stdin, a line at a time (makes the run interactive). */
  lines?: AsyncIterable<string>;
  /** Whether a person can answer prompts (default false, or true when `lines` is given). */
  interactive?: boolean;
  /** The platform (default "linux") and which commands are on PATH (default: all). */
  os?: string;
  which?: (command: string) => boolean;
  /** `.env` files by path: what `readEnvFile` returns for each. */
  files?: Record<string, Record<string, string>>;
  /** Sees every stdout write as it happens. */
  onStdout?: (text: string) => void;
  /** The per-request limit on calls to the issuer, in milliseconds. */
  httpTimeoutMs?: number;
  /** Whether stderr is a terminal that may animate (default false). */
  animate?: boolean;
  /** Whether stderr is a terminal at all (`Deps.stderrIsTerminal`; default false). */
  stderrIsTerminal?: boolean;
  /** The origin that replaces every URL a provider preset names (`Deps.presetBase`). */
  presetBase?: string;
  /** The opener records the address and starts `browser`, then fails with this message (no browser opened). */
  openFails?: string;
  /** The timer behind every wait (`Deps.timer`); by default the runtime's. */
  timer?: (ms: number, signal: AbortSignal) => Promise<void>;
  /** The width of stderr, for wrapping (`Deps.columns`); by default none. */
  columns?: number;
  /** How the person runs the tool (`Deps.invokedAs`). */
  invokedAs?: string;
  /** All of stdin, for commands that read it whole (`fetch -d @-`). */
  stdin?: Uint8Array<ArrayBuffer>;
  /** Whether stdout is a terminal (`Deps.stdoutIsTerminal`; default false, a pipe). */
  stdoutIsTerminal?: boolean;
  /** The working directory (`Deps.cwd`), which messages show a relative `.env` under. */
  cwd?: string;
  /** Who owns each end of a connection to the callback server (`Deps.socketOwners`); by default not asked. */
  socketOwners?: Deps["socketOwners"];
  /** The keychain tools' runner (`Deps.runTool`); absent: no keychain (see `env`'s OAUTH_TOKEN_STORAGE). */
  runTool?: Deps["runTool"];
  /** Runs `exec`'s program (`Deps.runProgram`); by default none can be run. */
  runProgram?: Deps["runProgram"];
}

/** Runs `main(args)` with injected edges and a bound; an overrun fails the case instead of hanging it. */
export async function run(args: string[], options: RunOptions = {}): Promise<Run> {
  const home = options.home ?? await Deno.makeTempDir({ prefix: "oauth-login-hostile-" });
  const env: Record<string, string> = {
    HOME: home,
    USERPROFILE: home,
    XDG_CONFIG_HOME: `${home}/config`,
    XDG_CACHE_HOME: `${home}/cache`,
    XDG_STATE_HOME: `${home}/state`,
    XDG_DATA_HOME: `${home}/data`,
    APPDATA: `${home}/appdata`,
    LOCALAPPDATA: `${home}/localappdata`,
    DISPLAY: ":0", // a desktop: the browser flow is the one these cases attack
    // The token cache as it was before the keychain (issue 21): the cases that read refresh tokens and keys
    // from the entry files need them there. The keychain's own cases set this (and a fake keychain tool).
    OAUTH_TOKEN_STORAGE: "file",
    ...options.env,
  };
  let stdout = "";
  const stdoutChunks: Uint8Array[] = [];
  let stderr = "";
  const opened: string[] = [];
  const controller = options.controller ?? new AbortController();
  let browsing: Promise<BrowserVisit | undefined> | undefined;
  let browserError: unknown;
  const deps: Deps = {
    fetch: options.fetch ?? globalThis.fetch,
    openUrl: options.openUrl ?? ((url) => {
      opened.push(url);
      if (options.browser) {
        browsing = options.browser(url).catch((error) => {
          browserError = error;
          controller.abort(); // end the login at once: the case has already failed
          return undefined;
        });
      }
      return options.openFails === undefined ? Promise.resolve() : Promise.reject(new Error(options.openFails));
    }),
    now: options.now ?? (() => Date.now()),
    env: (name) => env[name],
    readEnvFile: (path) => Promise.resolve(options.files?.[path]),
    stdout: (text) => {
      stdout += text;
      stdoutChunks.push(encoder.encode(text));
      options.onStdout?.(text);
    },
    stdoutBytes: (bytes) => {
      const text = decoder.decode(bytes);
      stdout += text;
      stdoutChunks.push(bytes.slice());
      options.onStdout?.(text);
    },
    stdoutIsTerminal: options.stdoutIsTerminal ?? false,
    stderr: (text) => {
      stderr += text;
      options.onStderr?.(text);
    },
    canPrompt: options.interactive ?? options.lines !== undefined,
    storage: options.storage ? options.storage(home) : fileStorage(`${home}/cache`),
    signal: controller.signal,
    httpTimeoutMs: options.httpTimeoutMs,
    os: options.os ?? "linux",
    which: options.which ?? (() => true),
    sleep: options.sleep ?? (() => Promise.reject(new Error("this case does not expect to wait"))),
    readLines: options.lines ? () => options.lines! : undefined,
    animate: options.animate ?? false,
    stderrIsTerminal: options.stderrIsTerminal ?? false,
    presetBase: options.presetBase,
    timer: options.timer,
    columns: options.columns,
    invokedAs: options.invokedAs,
    readStdin: options.stdin ? () => Promise.resolve(options.stdin!) : undefined,
    cwd: options.cwd === undefined ? undefined : () => options.cwd!,
    socketOwners: options.socketOwners,
    runTool: options.runTool,
    runProgram: options.runProgram,
  };
  const started = performance.now();
  const running = main(args, deps);
  const limit = bound(options.boundMs ?? BOUND_MS);
  const first = await Promise.race([running, limit.done]);
  limit.cancel();
  let overrun = false;
  if (first === "late") {
    overrun = true;
    options.onOverrun?.();
    controller.abort();
    await within(running, BOUND_MS, "main() after its overrun and Ctrl-C");
  }
  const code = await running;
  const ms = performance.now() - started;
  const visit = await browsing;
  if (browserError) {
    const why = browserError instanceof Error ? browserError.message : String(browserError);
    throw new Error(`the browser script failed (${why}); main() ended with ${code}; stderr:\n${stderr}`, {
      cause: browserError,
    });
  }
  if (overrun) {
    throw new Error(
      `main() was still running after ${
        options.boundMs ?? BOUND_MS
      } ms (it then ended with ${code}); stderr:\n${stderr}`,
    );
  }
  const stdoutBytes = new Uint8Array(stdoutChunks.reduce((n, chunk) => n + chunk.length, 0));
  stdoutChunks.reduce((offset, chunk) => (stdoutBytes.set(chunk, offset), offset + chunk.length), 0);
  return { code, stdout, stdoutBytes, stderr, opened, visit, ms, home };
}

/** Every file under `dir`, relative to it. */
export async function filesUnder(dir: string): Promise<string[]> {
  const found: string[] = [];
  const walk = async (path: string, prefix: string) => {
    for await (const entry of Deno.readDir(path)) {
      const name = `${prefix}${entry.name}`;
      if (entry.isDirectory) await walk(`${path}/${entry.name}`, `${name}/`);
      else found.push(name);
    }
  };
  await walk(dir, "");
  return found.sort();
}

/** A failed login saved nothing: the temporary home it was given is still empty. Removes it. */
export async function assertNothingSaved(result: Run): Promise<void> {
  try {
    assertEquals(await filesUnder(result.home), [], "a failed login writes nothing to the cache directory");
  } finally {
    await Deno.remove(result.home, { recursive: true });
  }
}

/** Removes the temporary home of a run that may have saved something. */
export async function cleanUp(result: Run): Promise<void> {
  await Deno.remove(result.home, { recursive: true });
}

/** The secrets a mock handed out or received: none may appear on the terminal or a page. */
export function secretsOf(mock: ServedMock, extra: string[] = []): string[] {
  const secrets = [...mock.accessTokens.keys(), ...extra];
  const refresh = (mock as { refreshTokens?: Map<string, unknown> }).refreshTokens;
  if (refresh) secrets.push(...refresh.keys());
  for (const request of mock.requests) {
    for (const field of ["code", "code_verifier", "client_secret", "refresh_token", "token"]) {
      const value = request.form[field];
      if (value) secrets.push(value);
    }
  }
  for (const client of mock.clients) if (client.secret) secrets.push(client.secret);
  return secrets.filter((s) => s.length >= 8);
}

/**
 * No secret on stderr (stdout too, unless the case asked for `--json`) nor on the page, and no raw
 * control character on the terminal.
 */
export function assertNoLeaks(result: Run, secrets: string[], options: { stdoutMayHoldTokens?: boolean } = {}): void {
  for (const secret of secrets) {
    // At most a short prefix may show (the trace redacts to 4 characters).
    const probe = secret.slice(0, 12);
    assert(!result.stderr.includes(probe), `a secret (${probe.slice(0, 4)}…) reached stderr`);
    if (!options.stdoutMayHoldTokens) assert(!result.stdout.includes(probe), "a secret reached stdout");
    if (result.visit) assert(!result.visit.body.includes(probe), "a secret reached the browser page");
  }
  const control = result.stderr.match(
    // deno-lint-ignore no-control-regex
    /[\x00-\x09\x0b-\x1f\x7f-\x9f\u00ad\u061c\u115f\u1160\u180e\u200b-\u200f\u2028-\u202e\u2060-\u206f\u3164\ufeff\uffa0\u{e0000}-\u{e007f}]/u,
  );
  assert(!control, `a raw control character (U+${control?.[0].charCodeAt(0).toString(16)}) reached stderr`);
}

/** A mock issuer for the length of `fn`. */
export async function withMock(
  fn: (mock: ServedMock) => Promise<void>,
  options: Parameters<typeof serveMockIssuer>[0] = {},
): Promise<void> {
  const mock = serveMockIssuer(options);
  try {
    await fn(mock);
  } finally {
    await mock.close();
  }
}

/** The stderr of a clean browser login: the two opening lines and the success line, nothing else. */
export function cleanLoginStderr(start: string, host: string, user = "alice@example.com"): string {
  return `Opening your browser to sign in at ${host} ...\nIf it does not open, visit: ${start}\n` +
    `${WAITING_LINE}Logged in as ${user}\n`;
}

/**
 * The start address's path, as regular-expression source: 16 random base64url characters (96 bits)
 * after the origin, as in `http://127.0.0.1:PORT/3kQ9…`; no other local process can guess it.
 */
export const START_PATH = "/[A-Za-z0-9_-]{16}";

/** The static line a browser login shows while it waits, when stderr is no terminal (the default timeout). */
export const WAITING_LINE = "Waiting for the browser for up to 5 minutes (Ctrl-C cancels)\n";

// ── The browser side ────────────────────────────────────────────────────────────────────────────

/** Follows the short loopback address to the authorization URL and returns it, with its state. */
export async function authorizationUrl(start: string): Promise<{ url: URL; state: string }> {
  const response = await fetch(start, { redirect: "manual" });
  await response.body?.cancel();
  assertEquals(response.status, 302, "the short address redirects to the authorization URL");
  const url = new URL(response.headers.get("location")!);
  return { url, state: url.searchParams.get("state")! };
}

/** Asks the authorization server (approve) and returns the callback URL it redirects to, unvisited. */
export async function genuineCallback(start: string): Promise<URL> {
  const { url } = await authorizationUrl(start);
  const response = await fetch(url, { redirect: "manual" });
  await response.body?.cancel();
  assertEquals(response.status, 302, "the mock redirects back to the callback");
  return new URL(response.headers.get("location")!);
}

/** What the callback server said to one request. */
export interface Answer {
  status: number;
  body: string;
  headers: Headers;
}

/** A plain `fetch` at the callback server, the body read. */
export async function hit(url: string | URL, init?: RequestInit): Promise<Answer> {
  const response = await fetch(url, { ...init, redirect: "manual" });
  const body = await response.text();
  return { status: response.status, body, headers: response.headers };
}

/** What came back on a raw connection: the status (if any), the whole text, and whether it closed. */
export interface RawAnswer {
  status?: number;
  text: string;
  closed: boolean;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * Sends raw bytes on a new connection and reads one response: until its body is complete, or the
 * server closes or resets the connection. Bounded: a server that neither answers nor closes fails.
 */
export async function raw(port: number, data: string | Uint8Array, hostname = "127.0.0.1"): Promise<RawAnswer> {
  const conn = await Deno.connect({ hostname, port });
  let text = "";
  let closed = false;
  let late = false;
  const limit = setTimeout(() => {
    late = true;
    conn.close();
  }, 2_000);
  try {
    try {
      await conn.write(typeof data === "string" ? encoder.encode(data) : data);
    } catch {
      closed = true; // the server hung up before taking all of it
    }
    const buffer = new Uint8Array(16 * 1024);
    while (!closed) {
      let n: number | null;
      try {
        n = await conn.read(buffer);
      } catch (error) {
        if (late) throw new Error(`no answer and no close within 2 s on a raw connection`);
        if (error instanceof Deno.errors.ConnectionReset || error instanceof Deno.errors.BrokenPipe) {
          closed = true;
          break;
        }
        throw error;
      }
      if (n === null) {
        closed = true;
        break;
      }
      text += decoder.decode(buffer.subarray(0, n), { stream: true });
      if (responseComplete(text)) break;
    }
  } finally {
    clearTimeout(limit);
    if (!late) conn.close();
  }
  const status = text.match(/^HTTP\/1\.[01] (\d{3})/)?.[1];
  return { status: status ? Number(status) : undefined, text, closed };
}

function responseComplete(text: string): boolean {
  const end = text.indexOf("\r\n\r\n");
  if (end < 0) return false;
  const head = text.slice(0, end).toLowerCase();
  const length = head.match(/\r\ncontent-length: *(\d+)/)?.[1];
  if (length !== undefined) return encoder.encode(text.slice(end + 4)).length >= Number(length);
  if (head.includes("transfer-encoding: chunked")) return text.endsWith("0\r\n\r\n");
  return false;
}

/** A GET over raw TCP with the headers given (no Host unless given), asking to close afterwards. */
export function rawGet(port: number, target: string, headers: Record<string, string>, version = "1.1") {
  const lines = [`GET ${target} HTTP/${version}`, ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`)];
  return raw(port, `${lines.join("\r\n")}\r\nConnection: close\r\n\r\n`);
}

/** The port of a loopback URL. */
export function portOf(url: string | URL): number {
  return Number(new URL(url).port);
}

/** A port that is free now (the OS picks it). */
export function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

/**
 * Addresses of this machine that are not 127.0.0.1 or ::1: 127.0.0.2 on Linux (which routes all of
 * 127.0.0.0/8 to the loopback interface, so only a listener on 127.0.0.1 itself refuses it), and every
 * interface address that is neither loopback nor link-local (those only with `--allow-sys`). A
 * listener bound to 0.0.0.0 or :: accepts connections on all of them.
 */
export function addressesBeyondLoopback(): string[] {
  const addresses = Deno.build.os === "linux" ? ["127.0.0.2"] : [];
  const sys = Deno.permissions.querySync({ name: "sys", kind: "networkInterfaces" }).state === "granted";
  for (const { address } of sys ? Deno.networkInterfaces() : []) {
    if (address === "127.0.0.1" || address === "::1" || /^fe80:/i.test(address)) continue;
    if (!addresses.includes(address)) addresses.push(address);
  }
  return addresses;
}

/**
 * Asserts that `port` refuses a connection on every address of {@link addressesBeyondLoopback}:
 * the listener is bound to the loopback address only (SECURITY.md: never 0.0.0.0). Returns the
 * addresses tried; it throws when there is none, since the check would then prove nothing.
 */
export async function assertLoopbackOnly(port: number): Promise<string[]> {
  const addresses = addressesBeyondLoopback();
  assert(addresses.length > 0, "this machine has no address beyond loopback to try");
  for (const hostname of addresses) {
    let conn: Deno.Conn | undefined;
    try {
      conn = await Deno.connect({ hostname, port });
    } catch (error) {
      assert(
        error instanceof Deno.errors.ConnectionRefused || error instanceof Deno.errors.AddrNotAvailable,
        `connecting to ${hostname}:${port}: ${error}`,
      );
      continue;
    }
    conn.close();
    throw new Error(`port ${port} accepted a connection on ${hostname}: the listener is not bound to loopback only`);
  }
  return addresses;
}

/** Asserts nothing listens on the port any more. */
export async function assertPortClosed(port: number, hostname = "127.0.0.1"): Promise<void> {
  try {
    const conn = await Deno.connect({ hostname, port });
    conn.close();
  } catch (error) {
    assert(error instanceof Deno.errors.ConnectionRefused, String(error));
    return;
  }
  throw new Error(`port ${port} on ${hostname} is still open`);
}

// ── Servers the mock cannot be ──────────────────────────────────────────────────────────────────

export interface SilentServer {
  url: string;
  port: number;
  /** Resolves when a request has arrived (its first bytes were read). */
  requested: Promise<void>;
  close(): Promise<void>;
}

/**
 * Accepts connections and reads the requests, and never answers: the server that hangs. With a
 * `preamble`, it sends that much of an answer (say, the headers) once a request arrives, then stalls.
 */
export function silentServer(preamble?: string): SilentServer {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  const requested = signal();
  const conns = new Set<Deno.Conn>();
  const readers: Promise<void>[] = [];
  const accepting = (async () => {
    for await (const conn of listener) {
      conns.add(conn);
      readers.push((async () => {
        const buffer = new Uint8Array(4096);
        let answered = false;
        try {
          while ((await conn.read(buffer)) !== null) {
            if (preamble && !answered) {
              answered = true;
              await conn.write(encoder.encode(preamble));
            }
            requested.resolve();
          }
        } catch { /* closed by close() */ }
      })());
    }
  })().catch(() => {});
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    requested: requested.promise,
    async close() {
      listener.close();
      for (const conn of conns) {
        try {
          conn.close();
        } catch { /* already closed by the peer */ }
      }
      await accepting;
      await Promise.all(readers);
    },
  };
}

/** A gate that a handler can wait on; opened at the end of the case so no handler stays pending. */
export function gate(): { wait: Promise<void>; open: () => void } {
  const { promise, resolve } = Promise.withResolvers<void>();
  return { wait: promise, open: () => resolve() };
}

/** A JSON response. */
export function json(body: unknown, status = 200, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json", ...headers } });
}

/** A body that never ends (it stops after 64 MiB so a broken client cannot spin for ever). */
export function endlessBody(): ReadableStream<Uint8Array> {
  const chunk = encoder.encode(`{"padding":"${"x".repeat(64 * 1024 - 14)}",`);
  let sent = 0;
  return new ReadableStream({
    pull(controller) {
      if (sent >= 64 * 1024 * 1024) return controller.close();
      sent += chunk.length;
      controller.enqueue(chunk);
    },
  });
}

export { scriptedBrowser };

/** Whether a file exists (no other error is swallowed). */
export async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
}

/**
 * Makes the mock's next answer at a path ending in `path` (each one, with `every`) its own answer's JSON
 * as `reshape` returns it, with `status` (default 200): a server that says something else. `before`
 * runs first (to change the mock's state for that answer).
 */
export function reshapeAnswer(
  mock: ServedMock,
  path: string,
  reshape: (body: Record<string, unknown>) => Record<string, unknown>,
  options: { status?: number; every?: boolean; before?: () => void } = {},
): void {
  const intercept: NonNullable<ServedMock["intercept"]> = async (record, _url, request) => {
    if (!record.path.endsWith(path)) return undefined;
    mock.intercept = undefined;
    options.before?.();
    const replay = new Request(request.url, {
      method: "POST",
      headers: request.headers,
      body: new URLSearchParams(record.form),
    });
    const body = await (await mock.handler(replay)).json();
    if (options.every) mock.intercept = intercept;
    return Response.json(reshape(body), { status: options.status ?? 200 });
  };
  mock.intercept = intercept;
}

/**
 * Makes the mock's next token answer say that only `scope` was granted (as a server that narrows the
 * grant does), optionally with no refresh token; later answers are the mock's own.
 */
export function grantOnlyOnce(mock: ServedMock, scope: string, options: { refreshToken?: boolean } = {}): void {
  const before = () => {
    if (options.refreshToken === false) mock.issueRefreshTokens = false;
  };
  reshapeAnswer(mock, "/token", (body) => ({ ...body, scope }), { before });
}

/** A clock the tool's pauses move instead of sleeping; `advance` moves it by hand. */
export function fakeClock(start = Date.now()): {
  now: () => number;
  sleep: (ms: number) => Promise<void>;
  advance: (ms: number) => void;
} {
  let now = start;
  return {
    now: () => now,
    sleep: (ms: number) => {
      now += ms;
      return Promise.resolve();
    },
    advance: (ms: number) => void (now += ms),
  };
}

/** Lines typed at the terminal, pushed by the case; the iterable ends when `end` is called. */
export function keyboard(): { type(line: string): void; end(): void; lines: AsyncIterable<string> } {
  const queue: string[] = [];
  let wake: (() => void) | undefined;
  let ended = false;
  return {
    type(line: string) {
      queue.push(line);
      wake?.();
    },
    end() {
      ended = true;
      wake?.();
    },
    lines: (async function* () {
      for (;;) {
        while (queue.length > 0) yield queue.shift()!;
        if (ended) return;
        await new Promise<void>((resolve) => wake = resolve);
      }
    })(),
  };
}
