/**
 * oauth-login: log in to any OAuth 2.0 / OpenID Connect authorization server from the terminal.
 *
 * It discovers the issuer (RFC 8414 / OpenID discovery), opens the system browser at a short
 * loopback address that redirects to the authorization endpoint, catches the redirect on a one-shot
 * server bound to the loopback interface (RFC 8252), checks `state` and `iss` (RFC 9207), exchanges
 * the code with PKCE S256 (RFC 7636) and shows who logged in. All protocol work goes through
 * oauth4webapi.
 *
 * Subcommands: `login` (the default).
 *
 *     deno run --allow-net --allow-env --allow-read --allow-write --allow-run login.ts \
 *       --issuer https://dev-123456.okta.com/oauth2/default --client-id 0oa...
 *
 * @module
 */
import type * as Oauth from "oauth4webapi";

// ── Constants ───────────────────────────────────────────────────────────────────────────────────

export const VERSION = "0.1.0";
/** The callback path of the default redirect URI. */
export const CALLBACK_PATH = "/callback";
/** How long the login waits for the browser, unless `--timeout` says otherwise. */
export const LOGIN_TIMEOUT_MS = 5 * 60_000;
/** Every request to the issuer is aborted after this long (connect, headers and body). */
export const HTTP_TIMEOUT_MS = 30_000;
/** The most we read of any response body from the issuer. */
export const MAX_BODY_BYTES = 1024 * 1024;
/** How long we wait for the browser opener itself before carrying on. */
export const OPENER_TIMEOUT_MS = 10_000;
/** The longest server string we print or put on a page. */
const MAX_DISPLAY_CHARS = 300;
/** A shutdown of the callback server never waits longer than this for open connections. */
const SHUTDOWN_GRACE_MS = 1_000;
/** A pause between the last response and closing the server, so its bytes leave the socket. */
const FLUSH_MS = 10;

/** Exit codes, documented in the README. */
export const EXIT = {
  ok: 0,
  failure: 1,
  usage: 2,
  denied: 3,
  loginRequired: 4,
  timedOut: 5,
  interrupted: 130,
} as const;

const ENV_VARS = {
  issuer: "OAUTH_ISSUER",
  clientId: "OAUTH_CLIENT_ID",
  clientSecret: "OAUTH_CLIENT_SECRET",
  scope: "OAUTH_SCOPE",
  redirectUri: "OAUTH_REDIRECT_URI",
} as const;

const CLIENT_AUTH_METHODS = ["none", "client_secret_basic", "client_secret_post"] as const;

/** Fields whose values are secrets: the trace shows at most a short prefix of them. */
const SECRET_FIELDS = new Set([
  "access_token",
  "refresh_token",
  "id_token",
  "token",
  "code",
  "code_verifier",
  "client_secret",
  "device_code",
  "password",
  "client_assertion",
]);

// ── Types ───────────────────────────────────────────────────────────────────────────────────────

export type ClientAuthMethod = typeof CLIENT_AUTH_METHODS[number];
export type ValueSource = "flag" | "environment" | ".env" | "default";

/** Everything a command needs to know, resolved from flags, environment and `.env`. */
export interface Config {
  command: "login";
  /** The issuer identifier we expect the metadata to name. */
  issuer: string;
  /** Set when the person gave the full metadata URL instead of the issuer. */
  metadataUrl?: string;
  clientId: string;
  clientSecret?: string;
  /** `undefined` means the default: `openid profile` (+ `offline_access` when offered). */
  scope?: string;
  /** A fixed redirect URI (from `--redirect-uri` or `--port`), else the ephemeral default. */
  redirectUri?: string;
  timeoutMs: number;
  browser: boolean;
  json: boolean;
  verbose: boolean;
  clientAuth?: ClientAuthMethod;
  /** Where each setting came from, for `--verbose` and bug reports. Secrets are not kept here. */
  sources: Record<string, ValueSource>;
}

/** The edges of the tool: every effect goes through one of these, so tests can replace them. */
export interface Deps {
  fetch: typeof fetch;
  /** Hands an http(s) URL to the browser; throws when no browser could be started. */
  openUrl: (url: string) => Promise<void>;
  now: () => number;
  env: (name: string) => string | undefined;
  /** Reads a dotenv file and returns its variables (undefined when there is no such file). */
  readEnvFile: (path: string) => Promise<Record<string, string> | undefined>;
  stdout: (text: string) => void;
  stderr: (text: string) => void;
  /** Aborted on Ctrl-C. */
  signal: AbortSignal;
}

/** What a login produced. */
export interface LoginResult {
  tokens: Oauth.TokenEndpointResponse;
  /** The name we show: `username`, else `preferred_username`, `email` or `sub`. */
  user?: string;
  subject?: string;
  issuer: string;
}

interface Redirect {
  /** The addresses we listen on: `127.0.0.1`, and also `::1` for `localhost`. */
  addresses: string[];
  /** The host as it appears in the redirect URI (`127.0.0.1`, `[::1]` or `localhost`). */
  host: string;
  port: number;
  path: string;
}

// ── Errors ──────────────────────────────────────────────────────────────────────────────────────

type ErrorCode =
  | "usage"
  | "config"
  | "port_in_use"
  | "network"
  | "invalid_response"
  | "denied"
  | "login_required"
  | "timeout"
  | "interrupted"
  | "failure";

/** Something we detected ourselves: a bad flag, an unreachable host, an invalid answer. */
export class LoginError extends Error {
  override name = "LoginError";
  readonly code: ErrorCode;
  readonly hint?: string;
  constructor(code: ErrorCode, message: string, options?: { hint?: string; cause?: unknown }) {
    super(message, { cause: options?.cause });
    this.code = code;
    this.hint = options?.hint;
  }
}

/** What the authorization server said: its `error`, `error_description` and HTTP status. */
export class ServerError extends Error {
  override name = "ServerError";
  readonly code: string;
  readonly description?: string;
  readonly status?: number;
  readonly hint?: string;
  constructor(
    message: string,
    options: { code: string; description?: string; status?: number; hint?: string; cause?: unknown },
  ) {
    super(message, { cause: options.cause });
    this.code = options.code;
    this.description = options.description;
    this.status = options.status;
    this.hint = options.hint;
  }
}

/** The one place that maps an error to an exit code. */
export function exitCodeFor(error: unknown): number {
  if (error instanceof ServerError) {
    return error.code === "access_denied" ? EXIT.denied : EXIT.failure;
  }
  if (!(error instanceof LoginError)) return EXIT.failure;
  switch (error.code) {
    case "usage":
    case "config":
    case "port_in_use":
      return EXIT.usage;
    case "denied":
      return EXIT.denied;
    case "login_required":
      return EXIT.loginRequired;
    case "timeout":
      return EXIT.timedOut;
    case "interrupted":
      return EXIT.interrupted;
    default:
      return EXIT.failure;
  }
}

// ── Core: pure helpers ──────────────────────────────────────────────────────────────────────────

/** Strips control characters, escape sequences and bidi overrides from a server string. */
export function sanitize(text: unknown, max = MAX_DISPLAY_CHARS): string {
  const clean = String(text)
    // deno-lint-ignore no-control-regex
    .replace(/\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b./g, "")
    // deno-lint-ignore no-control-regex
    .replace(/[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g, " ");
  return clean.length > max ? `${clean.slice(0, max)}…` : clean;
}

/** Escapes text for HTML. */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** Shows at most a short prefix of a secret. */
export function redact(value: unknown): string {
  const text = String(value);
  return text.length <= 8 ? "[redacted]" : `${text.slice(0, 4)}…[redacted]`;
}

/** `127.0.0.1`, `[::1]` and `localhost`: the only hosts we listen on or allow over plain http. */
export function isLoopbackHost(hostname: string): boolean {
  return hostname === "127.0.0.1" || hostname === "[::1]" || hostname === "localhost";
}

function parseUrl(text: string): URL | undefined {
  try {
    return new URL(text);
  } catch {
    return undefined;
  }
}

/** Accepts an issuer identifier or a full metadata URL, as the seed tutorial uses. */
export function parseIssuer(text: string): { issuer: string; metadataUrl?: string } {
  const url = parseUrl(text);
  if (!url || (url.protocol !== "https:" && url.protocol !== "http:")) {
    throw new LoginError("config", `The issuer "${sanitize(text)}" is not an https URL`, {
      hint: "set --issuer or OAUTH_ISSUER to your authorization server, e.g. https://example.okta.com/oauth2/default",
    });
  }
  if (url.protocol === "http:" && !isLoopbackHost(url.hostname)) {
    throw new LoginError("config", `The issuer "${url.href}" must use https`, {
      hint: "plain http is only allowed for loopback development servers (127.0.0.1, [::1], localhost)",
    });
  }
  if (url.search || url.hash || url.username || url.password) {
    throw new LoginError(
      "config",
      `The issuer "${url.origin}${url.pathname}" must not have a query, fragment or credentials`,
    );
  }
  const wellKnown = url.pathname.match(
    /^(.*?)\/\.well-known\/(oauth-authorization-server|openid-configuration)(\/.*)?$/,
  );
  if (!wellKnown) return { issuer: url.href };
  // RFC 8414 inserts the well-known segment before the issuer's path; OpenID appends it. Okta
  // serves both forms, so derive the issuer from whichever side holds the path.
  const path = wellKnown[3] ?? wellKnown[1];
  return { issuer: `${url.origin}${path}`, metadataUrl: url.href };
}

/** Works out host, port and path of the redirect, and where to listen. */
export function planRedirect(redirectUri: string | undefined): Redirect {
  if (redirectUri === undefined) {
    return { addresses: ["127.0.0.1"], host: "127.0.0.1", port: 0, path: CALLBACK_PATH };
  }
  const url = parseUrl(redirectUri);
  if (!url || url.protocol !== "http:" || !isLoopbackHost(url.hostname)) {
    throw new LoginError(
      "config",
      `The redirect URI "${sanitize(redirectUri)}" is not an http URL on a loopback host`,
      { hint: "use http://127.0.0.1:PORT/PATH, http://[::1]:PORT/PATH or http://localhost:PORT/PATH" },
    );
  }
  if (url.search || url.hash) {
    throw new LoginError("config", `The redirect URI "${url.href}" must not have a query or fragment`);
  }
  const port = url.port === "" ? 80 : Number(url.port);
  const addresses = url.hostname === "localhost"
    ? ["127.0.0.1", "::1"]
    : [url.hostname === "[::1]" ? "::1" : "127.0.0.1"];
  return { addresses, host: url.hostname, port, path: url.pathname };
}

function redirectUriFor(redirect: Redirect, port: number): string {
  return `http://${redirect.host}:${port}${redirect.path}`;
}

/** `openid profile`, plus `offline_access` where the server lists it. */
export function defaultScope(scopesSupported: unknown): string {
  const offline = Array.isArray(scopesSupported) && scopesSupported.includes("offline_access");
  return offline ? "openid profile offline_access" : "openid profile";
}

/** Picks the client authentication from the metadata, unless the person chose one. */
export function chooseClientAuth(
  secret: string | undefined,
  supported: unknown,
  chosen?: ClientAuthMethod,
): ClientAuthMethod {
  if (chosen) return chosen;
  if (!secret) return "none";
  const methods = Array.isArray(supported) ? supported : ["client_secret_basic"];
  if (methods.includes("client_secret_basic")) return "client_secret_basic";
  if (methods.includes("client_secret_post")) return "client_secret_post";
  return "client_secret_basic";
}

/** The argv that opens `url` in a browser on this platform: never a shell string. */
export function openerCommand(
  url: string,
  platform: { os: string; env: (name: string) => string | undefined; wsl?: boolean },
): string[] {
  const browser = platform.env("BROWSER")?.trim();
  if (browser) {
    const argv = browser.split(/\s+/);
    return argv.some((a) => a.includes("%s")) ? argv.map((a) => a.replaceAll("%s", url)) : [...argv, url];
  }
  switch (platform.os) {
    case "darwin":
      return ["open", url];
    case "windows":
      return ["rundll32", "url.dll,FileProtocolHandler", url];
    default:
      return platform.wsl ? ["wslview", url] : ["xdg-open", url];
  }
}

/** Compares two strings in time that does not depend on where they differ. */
function timingSafeEqual(a: string, b: string): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a.charCodeAt(i) ^ b.charCodeAt(i);
  return diff === 0;
}

/** The small, self-contained page the browser gets from the callback server. */
export function page(status: number, title: string, message: string): Response {
  const body = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${escapeHtml(title)}</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:36em;margin:4em auto;padding:0 1em}</style>
</head><body><h1>${escapeHtml(title)}</h1><p>${escapeHtml(message)}</p></body></html>
`;
  return new Response(body, { status, headers: pageHeaders({ "content-type": "text/html; charset=utf-8" }) });
}

function pageHeaders(extra: Record<string, string>): Headers {
  return new Headers({
    "cache-control": "no-store",
    "referrer-policy": "no-referrer",
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "content-security-policy":
      "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    ...extra,
  });
}

/** A timer that can be awaited and cancelled. */
function delay(ms: number): { done: Promise<void>; cancel: () => void } {
  let id: ReturnType<typeof setTimeout> | undefined;
  const done = new Promise<void>((resolve) => id = setTimeout(resolve, ms));
  return { done, cancel: () => clearTimeout(id) };
}

function plural(n: number, unit: string): string {
  return `${n} ${unit}${n === 1 ? "" : "s"}`;
}

function seconds(ms: number): string {
  return ms % 1000 === 0 ? plural(ms / 1000, "second") : `${ms / 1000} seconds`;
}

// ── Core: command line and configuration ────────────────────────────────────────────────────────

const FLAGS = {
  issuer: { type: "string" },
  "client-id": { type: "string" },
  "client-secret": { type: "string" },
  "client-auth": { type: "string" },
  scope: { type: "string" },
  "redirect-uri": { type: "string" },
  port: { type: "string" },
  timeout: { type: "string" },
  "no-browser": { type: "boolean" },
  json: { type: "boolean" },
  verbose: { type: "boolean", short: "v" },
  "env-file": { type: "string" },
  help: { type: "boolean", short: "h" },
  version: { type: "boolean", short: "V" },
} as const;

type FlagValues = { [K in keyof typeof FLAGS]?: typeof FLAGS[K]["type"] extends "boolean" ? boolean : string };

interface Cli {
  command: "login";
  flags: FlagValues;
}

/** Parses argv with `parseArgs` from `node:util`; unknown flags are usage errors. */
export async function parseCli(args: string[]): Promise<Cli> {
  const { parseArgs } = await import("node:util");
  let parsed;
  try {
    parsed = parseArgs({ args, options: FLAGS, allowPositionals: true, strict: true });
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    const unknown = message.match(/Unknown option '([^']+)'/);
    throw new LoginError(
      "usage",
      unknown ? `Unknown flag "${sanitize(unknown[1])}"` : sanitize(message.split(". ")[0]),
      { hint: "run with --help to see the flags" },
    );
  }
  const [command = "login", ...rest] = parsed.positionals;
  if (command !== "login") {
    throw new LoginError("usage", `Unknown command "${sanitize(command)}"`, {
      hint: "run with --help to see the commands",
    });
  }
  if (rest.length > 0) {
    throw new LoginError("usage", `Unexpected argument "${sanitize(rest[0])}"`, {
      hint: "run with --help to see the usage",
    });
  }
  return { command, flags: parsed.values as FlagValues };
}

/** Flags win over the environment, the environment over `.env`. Pure. */
export function resolveConfig(
  cli: Cli,
  env: (name: string) => string | undefined,
  dotenv: Record<string, string> = {},
): Config {
  const { flags } = cli;
  const sources: Record<string, ValueSource> = {};
  const pick = (key: string, flag: string | undefined, variable: string): string | undefined => {
    const candidates: [string | undefined, ValueSource][] = [
      [flag, "flag"],
      [env(variable), "environment"],
      [dotenv[variable], ".env"],
    ];
    for (const [value, source] of candidates) {
      if (value !== undefined && value !== "") {
        sources[key] = source;
        return value;
      }
    }
    return undefined;
  };
  const issuerText = pick("issuer", flags.issuer, ENV_VARS.issuer);
  const clientId = pick("clientId", flags["client-id"], ENV_VARS.clientId);
  const clientSecret = pick("clientSecret", flags["client-secret"], ENV_VARS.clientSecret);
  const scope = pick("scope", flags.scope, ENV_VARS.scope);
  let redirectUri = pick("redirectUri", flags["redirect-uri"], ENV_VARS.redirectUri);

  if (!issuerText) {
    throw new LoginError("config", "No issuer is configured", {
      hint: `pass --issuer URL or set ${ENV_VARS.issuer} (in the environment or in .env)`,
    });
  }
  if (!clientId) {
    throw new LoginError("config", "No client id is configured", {
      hint: `pass --client-id ID or set ${ENV_VARS.clientId} (in the environment or in .env)`,
    });
  }
  if (flags.port !== undefined) {
    const port = Number(flags.port);
    if (!/^\d+$/.test(flags.port) || port < 1 || port > 65535) {
      throw new LoginError("usage", `The port "${sanitize(flags.port)}" is not a number from 1 to 65535`);
    }
    const base = new URL(redirectUri ?? `http://127.0.0.1${CALLBACK_PATH}`);
    base.port = String(port);
    redirectUri = base.href;
    sources.redirectUri = "flag";
  }
  planRedirect(redirectUri); // validate early: a bad redirect is a configuration error

  let timeoutMs = LOGIN_TIMEOUT_MS;
  if (flags.timeout !== undefined) {
    timeoutMs = Math.round(Number(flags.timeout) * 1000);
    if (!/^\d+(\.\d+)?$/.test(flags.timeout) || !(timeoutMs > 0)) {
      throw new LoginError("usage", `The timeout "${sanitize(flags.timeout)}" is not a positive number of seconds`);
    }
  }
  const clientAuth = flags["client-auth"];
  if (clientAuth !== undefined && !(CLIENT_AUTH_METHODS as readonly string[]).includes(clientAuth)) {
    throw new LoginError("usage", `The client authentication "${sanitize(clientAuth)}" is not supported`, {
      hint: `use one of ${CLIENT_AUTH_METHODS.join(", ")}`,
    });
  }
  if (clientAuth && clientAuth !== "none" && !clientSecret) {
    throw new LoginError("config", `The client authentication "${clientAuth}" needs a client secret`, {
      hint: `set ${ENV_VARS.clientSecret} (in the environment or in .env)`,
    });
  }
  return {
    command: cli.command,
    ...parseIssuer(issuerText),
    clientId,
    clientSecret: clientAuth === "none" ? undefined : clientSecret,
    scope,
    redirectUri,
    timeoutMs,
    browser: !flags["no-browser"],
    json: flags.json ?? false,
    verbose: flags.verbose ?? false,
    clientAuth: clientAuth as ClientAuthMethod | undefined,
    sources,
  };
}

// ── Edges: talking to the issuer ────────────────────────────────────────────────────────────────

let oauthModule: typeof Oauth | undefined;
/** oauth4webapi, loaded when a command first needs the protocol (the cached-token path does not). */
async function lib(): Promise<typeof Oauth> {
  return oauthModule ??= await import("oauth4webapi");
}

type Trace = (line: string) => void;

function describeFields(fields: Iterable<[string, unknown]>): string {
  const parts: string[] = [];
  for (const [key, value] of fields) {
    const shown = SECRET_FIELDS.has(key)
      ? redact(value)
      : typeof value === "string"
      ? sanitize(value, 80)
      : sanitize(JSON.stringify(value), 80);
    parts.push(`${sanitize(key, 40)}=${shown}`);
  }
  return parts.join(" ");
}

function describeBody(body: Uint8Array, contentType: string | null): string {
  const text = new TextDecoder().decode(body);
  if (contentType?.includes("json")) {
    try {
      const json = JSON.parse(text);
      if (json && typeof json === "object" && !Array.isArray(json)) return describeFields(Object.entries(json));
    } catch { /* shown below as text */ }
  }
  if (contentType?.includes("x-www-form-urlencoded")) return describeFields(new URLSearchParams(text));
  return `(${body.length} bytes of ${sanitize(contentType ?? "unknown type", 60)})`;
}

async function readCapped(response: Response, host: string): Promise<Uint8Array<ArrayBuffer>> {
  if (!response.body) return new Uint8Array();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of response.body) {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) {
      await response.body.cancel().catch(() => {});
      throw new LoginError("invalid_response", `The server at ${host} sent a response larger than 1 MiB`);
    }
    chunks.push(chunk);
  }
  const body = new Uint8Array(size);
  let offset = 0;
  for (const chunk of chunks) {
    body.set(chunk, offset);
    offset += chunk.length;
  }
  return body;
}

/**
 * The fetch oauth4webapi uses: a timeout on the whole exchange, a cap on the body, no redirects,
 * Ctrl-C honoured, and a redacted trace with `--verbose`.
 */
export function issuerFetch(deps: Deps, trace?: Trace): typeof fetch {
  return async (input, init) => {
    const url = new URL(input instanceof Request ? input.url : String(input));
    const method = init?.method ?? "GET";
    const host = url.host;
    const timeout = new AbortController();
    const timer = setTimeout(() => timeout.abort(), HTTP_TIMEOUT_MS);
    const signals = [timeout.signal, deps.signal, init?.signal].filter((s): s is AbortSignal => !!s);
    try {
      if (trace) {
        const sent = typeof init?.body === "string"
          ? init.body
          : init?.body instanceof URLSearchParams
          ? init.body.toString()
          : "";
        const auth = new Headers(init?.headers).get("authorization");
        trace(
          `> ${method} ${url.origin}${url.pathname}${url.search ? "?" + describeFields(url.searchParams) : ""}` +
            (sent ? ` ${describeFields(new URLSearchParams(sent))}` : "") +
            (auth ? ` authorization=${redact(auth)}` : ""),
        );
      }
      const response = await deps.fetch(url, { ...init, redirect: "manual", signal: AbortSignal.any(signals) });
      const body = await readCapped(response, host);
      trace?.(
        `< ${response.status} ${url.origin}${url.pathname} ${describeBody(body, response.headers.get("content-type"))}`,
      );
      if (response.status >= 300 && response.status < 400) {
        throw new LoginError(
          "invalid_response",
          `The server at ${host} answered ${method} ${url.pathname} with a redirect (HTTP ${response.status}), which is not followed`,
          { hint: "check the issuer URL: it must be the exact issuer, not a page that redirects" },
        );
      }
      const empty = response.status === 204 || response.status === 205 || response.status === 304;
      return new Response(empty ? null : body as Uint8Array<ArrayBuffer>, {
        status: response.status,
        headers: response.headers,
      });
    } catch (error) {
      if (error instanceof LoginError) throw error;
      if (deps.signal.aborted) throw new LoginError("interrupted", "Interrupted");
      if (timeout.signal.aborted) {
        throw new LoginError("network", `The server at ${host} did not answer within ${seconds(HTTP_TIMEOUT_MS)}`, {
          hint: "check your network connection and the issuer URL",
          cause: error,
        });
      }
      const reason = error instanceof Error ? error.message.split("\n")[0] : String(error);
      throw new LoginError("network", `Cannot reach ${host}: ${sanitize(reason, 160)}`, {
        hint: "check your network connection, proxy settings (HTTPS_PROXY) and the issuer URL",
        cause: error,
      });
    } finally {
      clearTimeout(timer);
    }
  };
}

interface Issuer {
  as: Oauth.AuthorizationServer;
  client: Oauth.Client;
  auth: Oauth.ClientAuth;
  authMethod: ClientAuthMethod;
  /** Options for every oauth4webapi request: our fetch, and plain http for loopback issuers. */
  http: Http;
}

type Http = Oauth.HttpRequestOptions<"GET", undefined> & Oauth.HttpRequestOptions<"POST", URLSearchParams>;

/** Turns what oauth4webapi threw into one of our errors, saying what we were trying to do. */
async function explain(error: unknown, doing: string): Promise<unknown> {
  if (error instanceof LoginError || error instanceof ServerError) return error;
  const oauth = await lib();
  if (error instanceof oauth.ResponseBodyError || error instanceof oauth.AuthorizationResponseError) {
    return serverError(doing, error.error, error.error_description, (error as Oauth.ResponseBodyError).status);
  }
  if (error instanceof oauth.WWWAuthenticateChallengeError) {
    const challenge = error.cause[0];
    const code = challenge?.parameters.error ?? "invalid_token";
    return serverError(doing, code, challenge?.parameters.error_description, error.status);
  }
  if (error instanceof oauth.OperationProcessingError) {
    const cause = error.cause;
    if (error.code === oauth.RESPONSE_IS_NOT_JSON || error.code === oauth.PARSE_ERROR) {
      const response = cause instanceof Response ? cause : undefined;
      const type = response?.headers.get("content-type")?.split(";")[0] ?? "a body that is not JSON";
      return new LoginError(
        "invalid_response",
        `Cannot ${doing}: the server did not answer with JSON (got ${sanitize(type, 60)})`,
      );
    }
    if (error.code === oauth.RESPONSE_IS_NOT_CONFORM && cause instanceof Response) {
      return new LoginError(
        "invalid_response",
        `Cannot ${doing}: the server answered HTTP ${cause.status}${cause.status >= 500 ? ", a server error" : ""}`,
        { hint: cause.status >= 500 ? "try again later" : undefined },
      );
    }
    return new LoginError(
      "invalid_response",
      `Cannot ${doing}: the server's answer is not valid (${sanitize(error.message)})`,
    );
  }
  if (error instanceof oauth.UnsupportedOperationError) {
    return new LoginError("invalid_response", `Cannot ${doing}: ${sanitize(error.message)}`);
  }
  return error;
}

function serverError(doing: string, code: string, description?: string, status?: number): ServerError {
  const detail = description ? ` (${sanitize(description)})` : "";
  const hints: Record<string, string> = {
    invalid_client: "check the client id and secret, and the client authentication (--client-auth)",
    invalid_grant: "the code or token was rejected: run the login again",
    unauthorized_client: "check that the client is allowed to use this grant at the server",
    invalid_scope: "check --scope against the scopes the server offers",
    access_denied: "run the login again and approve the request in the browser",
  };
  const what = code === "access_denied" ? "Sign-in was declined" : `Cannot ${doing}`;
  return new ServerError(`${what}: the server answered "${sanitize(code, 60)}"${detail}`, {
    code,
    description,
    status,
    hint: hints[code],
  });
}

/** Runs one protocol step, turning what it throws into a clear error. */
async function step<T>(doing: string, run: () => Promise<T> | T): Promise<T> {
  try {
    return await run();
  } catch (error) {
    throw await explain(error, doing);
  }
}

function assertEndpoint(value: unknown, name: string, issuer: string): URL {
  const url = typeof value === "string" ? parseUrl(value) : undefined;
  if (!url) {
    throw new LoginError("invalid_response", `The server's metadata has no valid "${name}"`);
  }
  const loopbackIssuer = isLoopbackHost(new URL(issuer).hostname);
  if (url.protocol !== "https:" && !(url.protocol === "http:" && loopbackIssuer && isLoopbackHost(url.hostname))) {
    throw new LoginError("invalid_response", `The server's "${name}" is not an https URL: "${sanitize(url.href)}"`);
  }
  return url;
}

/** Fetches and validates the issuer's metadata (RFC 8414, then OpenID discovery). */
export async function discover(config: Config, deps: Deps, trace?: Trace): Promise<Issuer> {
  const oauth = await lib();
  const issuerUrl = new URL(config.issuer);
  const http: Http = {
    [oauth.customFetch]: issuerFetch(deps, trace),
    [oauth.allowInsecureRequests]: issuerUrl.protocol === "http:",
  };
  const as = await step("fetch the server metadata", async () => {
    let response: Response;
    if (config.metadataUrl) {
      response = await issuerFetch(deps, trace)(config.metadataUrl, { headers: { accept: "application/json" } });
    } else {
      response = await oauth.discoveryRequest(issuerUrl, { ...http, algorithm: "oauth2" });
      if (response.status !== 200) {
        await response.body?.cancel();
        response = await oauth.discoveryRequest(issuerUrl, { ...http, algorithm: "oidc" });
      }
    }
    if (response.status === 404) {
      throw new LoginError("config", `The server has no metadata for the issuer "${config.issuer}" (HTTP 404)`, {
        hint: "check the issuer URL: it is the one your provider shows, e.g. https://example.okta.com/oauth2/default",
      });
    }
    try {
      return await oauth.processDiscoveryResponse(issuerUrl, response);
    } catch (error) {
      if (error instanceof oauth.OperationProcessingError && error.code === oauth.JSON_ATTRIBUTE_COMPARISON) {
        const said = (error.cause as { body?: { issuer?: unknown } })?.body?.issuer;
        throw new LoginError(
          "config",
          `Issuer mismatch: asked for "${config.issuer}", the server says "${sanitize(said)}"`,
          { hint: "set the issuer to exactly the value the server names (mind a trailing slash)" },
        );
      }
      throw error;
    }
  });
  assertEndpoint(as.authorization_endpoint, "authorization_endpoint", as.issuer);
  assertEndpoint(as.token_endpoint, "token_endpoint", as.issuer);
  for (const name of ["introspection_endpoint", "userinfo_endpoint", "revocation_endpoint"] as const) {
    if (as[name] !== undefined) assertEndpoint(as[name], name, as.issuer);
  }
  const methods = as.code_challenge_methods_supported;
  if (Array.isArray(methods) && !methods.includes("S256")) {
    throw new LoginError("invalid_response", "The server does not support PKCE with S256, which this tool requires");
  }
  const authMethod = chooseClientAuth(config.clientSecret, as.token_endpoint_auth_methods_supported, config.clientAuth);
  const auth = authMethod === "none"
    ? oauth.None()
    : authMethod === "client_secret_post"
    ? oauth.ClientSecretPost(config.clientSecret!)
    : oauth.ClientSecretBasic(config.clientSecret!);
  return { as, client: { client_id: config.clientId }, auth, authMethod, http };
}

/** Says who logged in: introspection, else the ID token's claims, else UserInfo. */
async function identify(
  issuer: Issuer,
  tokens: Oauth.TokenEndpointResponse,
  trace?: Trace,
): Promise<{ user?: string; subject?: string }> {
  const oauth = await lib();
  const { as, client, auth, http } = issuer;
  if (as.introspection_endpoint && issuer.authMethod !== "none") {
    try {
      const response = await oauth.introspectionRequest(as, client, auth, tokens.access_token, http);
      const info = await oauth.processIntrospectionResponse(as, client, response);
      if (info.active === true) {
        const user = typeof info.username === "string" ? info.username : info.sub;
        if (user) return { user, subject: info.sub };
      }
    } catch (error) {
      trace?.(`introspection gave no name: ${sanitize(((await explain(error, "introspect")) as Error).message)}`);
    }
  }
  const claims = oauth.getValidatedIdTokenClaims(tokens);
  const fromClaims = (c: Record<string, unknown>) =>
    [c.preferred_username, c.email, c.name].find((v): v is string => typeof v === "string" && v !== "");
  if (claims && fromClaims(claims)) return { user: fromClaims(claims), subject: claims.sub };
  if (as.userinfo_endpoint) {
    try {
      const response = await oauth.userInfoRequest(as, client, tokens.access_token, http);
      const info = await oauth.processUserInfoResponse(as, client, claims?.sub ?? oauth.skipSubjectCheck, response);
      const user = fromClaims(info) ?? info.sub;
      return { user, subject: info.sub };
    } catch (error) {
      trace?.(`userinfo gave no name: ${sanitize(((await explain(error, "fetch userinfo")) as Error).message)}`);
    }
  }
  return { user: claims?.sub, subject: claims?.sub };
}

// ── Edges: the callback server ──────────────────────────────────────────────────────────────────

interface Listener {
  port: number;
  addresses: string[];
  /** Installs the handler; until then every request gets 503. */
  handle(handler: (request: Request) => Response | Promise<Response>): void;
  close(): Promise<void>;
}

/** Binds the loopback address(es) of the redirect; `localhost` binds 127.0.0.1 and ::1 on one port. */
export async function listen(redirect: Redirect): Promise<Listener> {
  const controller = new AbortController();
  let handler: ((request: Request) => Response | Promise<Response>) | undefined;
  const servers: Deno.HttpServer<Deno.NetAddr>[] = [];
  // Responses not yet written: close() lets them reach the browser, but never waits for idle sockets.
  const inflight = new Set<Promise<void>>();
  const serve = (hostname: string, port: number) =>
    Deno.serve({
      hostname,
      port,
      signal: controller.signal,
      onListen() {},
      onError: () => page(500, "Error", "Something went wrong; see the terminal."),
    }, (request, info) => {
      const delivered = info.completed.catch(() => {});
      inflight.add(delivered);
      delivered.finally(() => inflight.delete(delivered));
      return handler ? handler(request) : page(503, "Not ready", "Try again in a moment.");
    });
  const close = async () => {
    const grace = delay(SHUTDOWN_GRACE_MS);
    await Promise.race([Promise.allSettled(inflight), grace.done]);
    // `completed` can resolve a moment before hyper flushes the bytes; give it one more turn.
    await delay(FLUSH_MS).done;
    controller.abort();
    await Promise.race([Promise.allSettled(servers.map((s) => s.finished)), grace.done]);
    grace.cancel();
  };
  let port = redirect.port;
  for (let attempt = 0;; attempt++) {
    try {
      for (const address of redirect.addresses) {
        const server = serve(address, port);
        servers.push(server);
        port = server.addr.port;
      }
      break;
    } catch (error) {
      await close();
      servers.length = 0;
      if (error instanceof Deno.errors.AddrInUse) {
        // With an ephemeral port, ::1 may already hold the port 127.0.0.1 got: pick another.
        if (redirect.port === 0 && attempt < 5) {
          port = 0;
          continue;
        }
        throw new LoginError("port_in_use", `Port ${redirect.port} is already in use by another program`, {
          hint: "stop that program, or register another redirect URI and pass it with --redirect-uri or --port",
          cause: error,
        });
      }
      if (error instanceof Deno.errors.AddrNotAvailable || error instanceof Deno.errors.PermissionDenied) {
        throw new LoginError(
          "port_in_use",
          `Cannot listen on ${redirect.addresses.join(" and ")} port ${port}: ${sanitize((error as Error).message)}`,
          {
            cause: error,
          },
        );
      }
      throw error;
    }
  }
  return {
    port,
    addresses: redirect.addresses,
    handle(next) {
      handler = next;
    },
    close,
  };
}

interface CallbackOptions {
  /** Host header values we answer: the redirect's host with its port. */
  hosts: string[];
  path: string;
  state: string;
  /** Where `/` sends the browser: the authorization URL. */
  authorizationUrl: string;
  /** Runs once, for the first callback that carries the right state; its page is the answer. */
  complete: (params: URLSearchParams) => Promise<Response>;
}

/**
 * The callback server's request handler. Only a GET on the callback path with the pending `state`
 * is handed to `complete`, once; everything else gets a 4xx and the login keeps waiting.
 */
export function callbackHandler(options: CallbackOptions): (request: Request) => Promise<Response> {
  let consumed = false;
  return async (request) => {
    const host = request.headers.get("host") ?? "";
    if (!options.hosts.includes(host.toLowerCase())) {
      return page(400, "Bad request", "This server only answers the sign-in in progress in your terminal.");
    }
    const url = new URL(request.url);
    if (request.method !== "GET") {
      const response = page(405, "Method not allowed", "Only GET is answered here.");
      response.headers.set("allow", "GET");
      return response;
    }
    if (url.pathname === "/" && !url.search && !consumed) {
      return new Response(null, { status: 302, headers: pageHeaders({ location: options.authorizationUrl }) });
    }
    if (url.pathname !== options.path) return page(404, "Not found", "There is nothing here.");
    const states = url.searchParams.getAll("state");
    if (states.length !== 1 || !timingSafeEqual(states[0], options.state)) {
      return page(
        400,
        "Not the sign-in in progress",
        states.length === 0
          ? "This request carries no state, so it cannot belong to the sign-in in progress. Nothing was changed."
          : "This request does not belong to the sign-in in progress in your terminal. Nothing was changed.",
      );
    }
    if (consumed) {
      return page(400, "Already handled", "This sign-in was already handled. See your terminal.");
    }
    consumed = true;
    return await options.complete(url.searchParams);
  };
}

// ── Edges: the browser ──────────────────────────────────────────────────────────────────────────

/** The real opener: spawns the platform's opener with argv (never a shell) and a time limit. */
export async function openWithSystemBrowser(url: string): Promise<void> {
  const wsl = Deno.build.os === "linux" && !!(Deno.env.get("WSL_DISTRO_NAME") || Deno.env.get("WSL_INTEROP"));
  const [program, ...args] = openerCommand(url, { os: Deno.build.os, env: (n) => Deno.env.get(n), wsl });
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(program, { args, stdin: "null", stdout: "null", stderr: "null" }).spawn();
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) throw new Error(`"${program}" was not found`);
    throw error;
  }
  const limit = delay(OPENER_TIMEOUT_MS);
  const status = await Promise.race([child.status, limit.done]);
  limit.cancel();
  if (status === undefined) {
    child.unref(); // a browser that stays in the foreground: let it run, and carry on
    return;
  }
  if (!status.success) throw new Error(`"${program}" exited with code ${status.code}`);
}

// ── Commands ────────────────────────────────────────────────────────────────────────────────────

function makeTrace(config: Config, deps: Deps): Trace | undefined {
  return config.verbose ? (line) => deps.stderr(`trace: ${line}\n`) : undefined;
}

/** Waits for `promise`, the login timeout or Ctrl-C, whichever comes first. */
async function waitForBrowser<T>(promise: Promise<T>, config: Config, deps: Deps): Promise<T> {
  const limit = delay(config.timeoutMs);
  let onAbort: (() => void) | undefined;
  try {
    return await Promise.race([
      promise,
      limit.done.then(() => {
        throw new LoginError("timeout", `No answer from the browser within ${seconds(config.timeoutMs)}`, {
          hint: "run the login again and finish it in the browser, or give more time with --timeout SECONDS",
        });
      }),
      new Promise<never>((_, reject) => {
        onAbort = () => reject(new LoginError("interrupted", "Login cancelled"));
        if (deps.signal.aborted) onAbort();
        deps.signal.addEventListener("abort", onAbort, { once: true });
      }),
    ]);
  } finally {
    limit.cancel();
    if (onAbort) deps.signal.removeEventListener("abort", onAbort);
  }
}

/** The browser login: discovery, PKCE, the loopback callback, the code exchange, who logged in. */
export async function login(config: Config, deps: Deps): Promise<LoginResult> {
  const oauth = await lib();
  const trace = makeTrace(config, deps);
  const issuer = await discover(config, deps, trace);
  const { as, client, auth, http } = issuer;
  const scope = config.scope ?? defaultScope(as.scopes_supported);
  const verifier = oauth.generateRandomCodeVerifier();
  const challenge = await oauth.calculatePKCECodeChallenge(verifier);
  const state = oauth.generateRandomState();
  const nonce = scope.split(" ").includes("openid") ? oauth.generateRandomNonce() : undefined;

  const redirect = planRedirect(config.redirectUri);
  const listener = await listen(redirect);
  try {
    const redirectUri = redirectUriFor(redirect, listener.port);
    const authorizationUrl = assertEndpoint(as.authorization_endpoint, "authorization_endpoint", as.issuer);
    const params = authorizationUrl.searchParams;
    params.set("response_type", "code");
    params.set("client_id", config.clientId);
    params.set("redirect_uri", redirectUri);
    params.set("scope", scope);
    params.set("state", state);
    params.set("code_challenge", challenge);
    params.set("code_challenge_method", "S256");
    if (nonce) params.set("nonce", nonce);

    const { promise: outcome, resolve, reject } = Promise.withResolvers<LoginResult>();
    outcome.catch(() => {}); // handled by waitForBrowser; avoid an unhandled rejection when we time out first
    const complete = async (callback: URLSearchParams): Promise<Response> => {
      try {
        const validated = await step(
          "accept the sign-in",
          () => oauth.validateAuthResponse(as, client, callback, state),
        );
        const tokens = await step("exchange the authorization code", async () => {
          const response = await oauth.authorizationCodeGrantRequest(
            as,
            client,
            auth,
            validated,
            redirectUri,
            verifier,
            http,
          );
          return await oauth.processAuthorizationCodeResponse(as, client, response, {
            expectedNonce: nonce ?? oauth.expectNoNonce,
          });
        });
        const who = await identify(issuer, tokens, trace);
        resolve({ tokens, issuer: as.issuer, ...who });
        const name = who.user ? `Signed in as ${sanitize(who.user)}` : "Signed in";
        return page(200, "Signed in", `${name} — you can close this tab and return to your terminal.`);
      } catch (error) {
        reject(error);
        const message = error instanceof Error ? sanitize(error.message) : "Unknown error";
        const title = error instanceof ServerError && error.code === "access_denied"
          ? "Sign-in cancelled"
          : "Sign-in failed";
        return page(400, title, `${message}. See your terminal for details.`);
      }
    };
    const hostHeaders = [`${redirect.host}:${listener.port}`];
    if (redirect.port === 80) hostHeaders.push(redirect.host);
    listener.handle(
      callbackHandler({
        hosts: hostHeaders,
        path: redirect.path,
        state,
        authorizationUrl: authorizationUrl.href,
        complete,
      }),
    );

    const start = `http://${redirect.host}:${listener.port}/`;
    const where = sanitize(authorizationUrl.host);
    if (config.browser) {
      deps.stderr(`Opening your browser to sign in at ${where} ...\n`);
      deps.stderr(`If it does not open, visit: ${start}\n`);
      try {
        await deps.openUrl(start);
      } catch (error) {
        const reason = error instanceof Error ? error.message : String(error);
        deps.stderr(`warning: Cannot open a browser (${sanitize(reason)}); open the address above yourself\n`);
      }
    } else {
      deps.stderr(`To sign in at ${where}, open this address in a browser on this machine: ${start}\n`);
    }
    return await waitForBrowser(outcome, config, deps);
  } finally {
    await listener.close();
  }
}

// ── CLI ─────────────────────────────────────────────────────────────────────────────────────────

export const USAGE = `oauth-login ${VERSION}: log in to an OAuth 2.0 / OpenID Connect server from the terminal

Usage: oauth-login [login] [flags]

Flags (each also read from the environment or .env where a variable is named):
  --issuer URL          the issuer, or its full metadata URL              OAUTH_ISSUER
  --client-id ID        the OAuth client id                               OAUTH_CLIENT_ID
  --client-secret S     the client secret, for confidential clients       OAUTH_CLIENT_SECRET
                        (as a flag it is visible to other local users: prefer the variable)
  --client-auth METHOD  none, client_secret_basic or client_secret_post (default: from metadata)
  --scope "A B"         scopes to ask for (default: openid profile [offline_access])  OAUTH_SCOPE
  --redirect-uri URI    a fixed loopback redirect URI registered with the server      OAUTH_REDIRECT_URI
                        (default: http://127.0.0.1:<any free port>/callback)
  --port N              listen on this fixed port (with 127.0.0.1 and /callback unless --redirect-uri)
  --timeout SECONDS     how long to wait for the browser (default: 300)
  --no-browser          print the address to open instead of opening a browser
  --json                print the identity and tokens as one JSON object on stdout
  --env-file PATH       read settings from this file instead of ./.env
  -v, --verbose         trace each exchange with the server (secrets redacted); stack traces
  -h, --help            show this help
  -V, --version         show the version

Environment: BROWSER (the browser command to run), NO_COLOR.

Exit codes: 0 ok, 1 failure, 2 usage or configuration, 3 denied or cancelled,
            4 login required, 5 timed out, 130 interrupted.

Example:
  oauth-login --issuer https://dev-123456.okta.com/oauth2/default --client-id 0oa...
`;

/** Runs the CLI and returns the exit code; every error is caught here, once. */
export async function main(args: string[], deps: Deps): Promise<number> {
  let verbose = args.includes("--verbose") || args.includes("-v");
  try {
    const cli = await parseCli(args);
    verbose = cli.flags.verbose ?? false;
    if (cli.flags.help) {
      deps.stdout(USAGE);
      return EXIT.ok;
    }
    if (cli.flags.version) {
      deps.stdout(`oauth-login ${VERSION}\n`);
      return EXIT.ok;
    }
    const envFile = cli.flags["env-file"];
    const dotenv = await deps.readEnvFile(envFile ?? ".env");
    if (envFile && !dotenv) {
      throw new LoginError("config", `Cannot read the env file "${sanitize(envFile)}"`, {
        hint: "check the path given to --env-file",
      });
    }
    const config = resolveConfig(cli, deps.env, dotenv);
    if (cli.flags["client-secret"] !== undefined) {
      deps.stderr(
        `warning: --client-secret is visible to other local users in the process list; set ${ENV_VARS.clientSecret} instead\n`,
      );
    }
    const result = await login(config, deps);
    deps.stderr(`Logged in as ${sanitize(result.user ?? "an unnamed user")}\n`);
    if (config.json) {
      const { tokens } = result;
      deps.stdout(
        JSON.stringify({
          issuer: result.issuer,
          user: result.user ?? null,
          sub: result.subject ?? null,
          ...tokens,
          expires_at: typeof tokens.expires_in === "number"
            ? new Date(deps.now() + tokens.expires_in * 1000).toISOString()
            : null,
        }) + "\n",
      );
    }
    return EXIT.ok;
  } catch (error) {
    return report(error, deps, verbose);
  }
}

function report(error: unknown, deps: Deps, verbose: boolean): number {
  const code = exitCodeFor(error);
  if (error instanceof LoginError || error instanceof ServerError) {
    deps.stderr(`error: ${error.message}\n`);
    if (error.hint) deps.stderr(`hint: ${error.hint}\n`);
  } else {
    const message = error instanceof Error ? error.message : String(error);
    deps.stderr(`error: ${sanitize(message)}\n`);
    if (!verbose) deps.stderr("hint: run again with --verbose for details\n");
  }
  if (verbose && error instanceof Error && error.stack) deps.stderr(`${error.stack}\n`);
  return code;
}

/** Reads a dotenv file with `process.loadEnvFile`, leaving the environment as it was. */
async function readEnvFileWithNode(path: string): Promise<Record<string, string> | undefined> {
  const { default: process } = await import("node:process");
  const before = Deno.env.toObject();
  try {
    process.loadEnvFile(path);
  } catch (error) {
    if ((error as { code?: string }).code === "ENOENT") return undefined;
    throw new LoginError(
      "config",
      `Cannot read the env file "${sanitize(path)}": ${sanitize((error as Error).message)}`,
    );
  }
  // Deno's loadEnvFile overwrites variables already set; the environment must win, so restore it.
  const after = Deno.env.toObject();
  const fromFile: Record<string, string> = {};
  for (const [name, value] of Object.entries(after)) {
    if (before[name] === value) continue;
    fromFile[name] = value;
    if (name in before) Deno.env.set(name, before[name]);
    else Deno.env.delete(name);
  }
  return fromFile;
}

/** The real edges, kept thin. */
export function realDeps(): Deps {
  const controller = new AbortController();
  Deno.addSignalListener("SIGINT", () => controller.abort());
  const encoder = new TextEncoder();
  const write = (stream: typeof Deno.stdout) => (text: string) => {
    const bytes = encoder.encode(text);
    for (let written = 0; written < bytes.length;) written += stream.writeSync(bytes.subarray(written));
  };
  return {
    fetch: globalThis.fetch,
    openUrl: openWithSystemBrowser,
    now: () => Date.now(),
    env: (name) => Deno.env.get(name),
    readEnvFile: readEnvFileWithNode,
    stdout: write(Deno.stdout),
    stderr: write(Deno.stderr),
    signal: controller.signal,
  };
}

// ── Entry ───────────────────────────────────────────────────────────────────────────────────────

if (import.meta.main) Deno.exit(await main(Deno.args, realDeps()));
