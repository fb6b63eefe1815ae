/**
 * oauth-login: log in to any OAuth 2.0 / OpenID Connect authorization server from the terminal.
 *
 * It opens the system browser at a short loopback address (a random path) that redirects to the
 * authorization endpoint, catches the redirect on a one-shot server bound to the loopback interface
 * (RFC 8252), checks `state` and `iss` (RFC 9207), exchanges the code with PKCE S256 (RFC 7636),
 * shows who logged in, and caches the tokens so that `token` prints a valid access token for
 * scripts and kubectl. All protocol work goes through oauth4webapi.
 *
 * Commands: `login` (the default), `token`, `whoami` (alias `status`), `logout`, `doctor`,
 * `profiles`, `fetch` and `exec`. Where no browser can reach the loopback (SSH, containers), login uses
 * the device flow (RFC 8628) or accepts the pasted address. Pointed at an API with nothing configured
 * (`fetch URL`), it finds where to sign in in the API's metadata (RFC 9728), gets itself a client
 * (RFC 7591) and signs in for that API, stepping up when the API asks for more (RFC 9470). Where no
 * person signs in (CI jobs, pods, cron), `--grant` gets the token with the client's credentials, a JWT
 * assertion or a token exchange.
 *
 * The module is cut by concern, one section each, in the order a reader needs them; each names
 * its entry points here, and nothing about its concern lives anywhere else:
 *
 *  1. Vocabulary: exit codes (`EXIT`), the edges (`Deps`: fetch, opener, clock, timers, storage,
 *     stdin/stdout/stderr, keychain tools, programs), the errors (`LoginError`, `ErrorResponse`) and
 *     the one wait (`wait`).
 *  2. Messages: every sentence the tool prints and how it is chosen (`explain`, `serverError`,
 *     `networkFailure`, `loginRequired`, `report`), wrapped (`wrap`, `say`) and sanitised (`sanitize`,
 *     `shellWord` for every value in a command a hint offers).
 *  3. Configuration: flags, the environment and `.env` become a `Config` (`resolveConfig`, `FLAGS`,
 *     `ENV_VARS`).
 *  4. Trust: who may decide where credentials go, what a project's `.env` may never give (the person's
 *     token storage, a grant's token sources), the protections it cannot turn off, and the endpoints it
 *     may name: on the host where the person signs in (`decideTrust`, `mayGive`, `trustedSources`,
 *     `PROTECTIONS`, `checkProjectEndpoints`).
 *  5. The .env file: where it is, how it is read, the lines `parseEnv` would misread, and a client key
 *     only in its own folder (`envFilePath`, `readEnvFile`, `dotenvLineProblems`, `misspeltKeys`,
 *     `withProjectKey`).
 *  6. Profiles: the user's config file, trusted only as the user's own (`selectProfile`, `saveProfile`,
 *     `profileSettings`, `readConfigFile`).
 *  7. Providers: each preset's quirks as data (`PRESETS`, `resolvePreset`, `inferProvider`).
 *  8. Talking to servers: the one sender every request goes through (`send`: routes and proxies,
 *     caps, timeouts, no redirects, the redacted trace), its adapters for the issuer and for APIs
 *     (`issuerFetch`, `sendWithToken`), and where a token may go (`tokenRefusal`, `B64TOKEN`).
 *  9. The authorization server: discovery (RFC 8414 / OpenID), its metadata and the client's
 *     authentication (`discover`, `checkProjectMetadata`, `issuerFor`, `clientAuthFor`).
 * 10. DPoP (RFC 9449): keys, proofs and nonces (`dpopState`, `enableDpop`, `headerLines`).
 * 11. The authorization request: scope, PKCE, `state`, `nonce`, PAR (RFC 9126) or a preflight
 *     (`authorizationRequest`, `preflight`).
 * 12. Getting the code back: the redirect URI and the loopback server, Deno.serve on a private Unix
 *     socket behind a connection guard that bounds what local processes can hold open (`planRedirect`,
 *     `listen`, `guardConnections`).
 * 13. Who may sign in here: the unguessable start address, answered only to the user's own programs
 *     (told by `ss`), the callback's check and pages, and the browser (`startPath`, `sameUser`,
 *     `callbackHandler`, `browserAvailability`).
 * 14. Signing in: the browser flow, paste-back and the device flow (RFC 8628) (`login`,
 *     `browserLogin`, `deviceLogin`).
 * 15. The code exchange and who logged in (`exchangeCode`, `identify`).
 * 16. Logins without a person: client credentials (RFC 6749 §4.4), JWT bearer (RFC 7523) and token
 *     exchange (RFC 8693), their settings, and the subject token sources read afresh at each grant
 *     (`resolveGrantConfig`, `readTokenSource`, `runGrant`, `grantAndSave`, `renewGrant`).
 * 17. The token cache: which entry is a configuration's, its key and its lifetimes (`entryFor`,
 *     `cacheKey`, `isFresh`, `renewable`, `toTokenSet`).
 * 18. Owner-only files and the lock: the cache on disk, the one writer of private files, who owns
 *     what (`fileStorage`, `writePrivateFile`, `lockEntry`).
 * 19. The keychain: the platforms' own tools (`secret-tool`, `security`, PowerShell), each call bounded
 *     by a deadline and never prompting, the first problem remembered (`withKeychain`, `runTool`).
 * 20. Long-lived secrets: sealed under a key the keychain keeps, and what an entry keeps where
 *     (`saveEntry`, `openEntry`, `holds`, `sealSecrets`, `openSealed`).
 * 21. Renewal and revocation (`renew`, `refreshLocked`, `refreshTokenSet`, `revokeTokenSet`).
 * 22. Resources that say where to sign in: an API's protected resource metadata (RFC 9728), the
 *     server it names, the sign-in for its resource and its entry (`resourceMode`, `discoverResource`,
 *     `resourceEntry`, `resourceLogin`).
 * 23. A client for a server an API named: the person's, the one registered before, or one registered
 *     now (RFC 7591), kept owner-only with its secret sealed (`obtainClient`, `registerClient`,
 *     `saveRegistration`).
 * 24. Step-up: an API that asks for more scope (RFC 6750 `insufficient_scope`) or a stronger sign-in
 *     (RFC 9470), once each; `--acr-values` / `--max-age` (`stepUp`, `meetAuthentication`).
 * 25. Commands: login, token, whoami, profiles, logout (`tokenCommand`, `usableEntry`, `whoamiCommand`,
 *     ...).
 * 26. Handing the token on: `fetch` calls an API, `exec` runs a program with the token in its
 *     environment (`fetchCommand`, `callApi`, `execCommand`, `narrowedEntry`).
 * 27. Doctor: every check, without signing in (`doctor`, `doctorResource`, `doctorGrant`).
 * 28. CLI and entry: argv (`quickParse`, `parseCli`), usage, `main(args, deps)` (which catches every
 *     error once), the real edges (`realDeps`, `runProgram`); the entry runs only as a program
 *     (`import.meta.main`).
 *
 *     deno run -P=login login.ts --issuer https://dev-123456.okta.com/oauth2/default --client-id 0oa...
 *
 * Public API: `main`, `realDeps`, `login`, `fileStorage`, `EXIT`, `VERSION`,
 * `LoginError`, `ErrorResponse` and the types `Deps`, `Storage`, `Config`, `TokenSet`, `LoginResult`.
 * `testing` holds internals for this project's tests only.
 *
 * Functions are declarations, except the ones a cached `token` runs: those are written
 * `const f = (function f(…) {…}).bind(undefined)`. V8 compiles a function in parentheses with the
 * module, so its bytecode lands in Deno's code cache; a declaration is compiled on its first call,
 * in every process (the `.bind` keeps the parentheses through `deno fmt` and the emit). On this
 * path that is 58 functions, about 11 % of the cached `token`'s instructions (callgrind); those the
 * `testing` object lists carry their type, as the public API's must. tests/hotpath_test.ts pins the
 * set: it names a function the path compiles on first call, and one in this form the path does not
 * run. They stay in their sections (grouping them would scatter nine concerns); bench/README.md has
 * the figures.
 *
 * @module
 */
import type * as Oauth from "npm:oauth4webapi@3.8.8";

// ── 1 Vocabulary: exit codes, the edges (Deps), the errors and the one wait ────────────────────────────────────────

/** This tool's version, as `--version` prints it. */
export const VERSION = "0.1.0";

/** Exit codes, documented in the README. */
export const EXIT = {
  ok: 0,
  failure: 1,
  usage: 2,
  denied: 3,
  loginRequired: 4,
  timedOut: 5,
  /** `exec`: the program could not be run (not executable, or not allowed), as shells say it. */
  cannotRun: 126,
  /** `exec`: there is no such program, as shells say it. */
  notFound: 127,
  interrupted: 130,
} as const;

/** The edges of the tool: every effect goes through one of these, so tests can replace them. */
export interface Deps {
  /** Sends every HTTP request (through the one sender, which adds routing, caps and timeouts). */
  fetch: typeof fetch;
  /** Hands an http(s) URL to the browser; throws when no browser could be started. */
  openUrl: (url: string) => Promise<void>;
  /** The clock: milliseconds since the epoch. */
  now: () => number;
  /** Reads an environment variable (undefined when unset). */
  env: (name: string) => string | undefined;
  /** Reads a dotenv file and returns its variables (undefined when there is no such file). */
  readEnvFile: (path: string) => Promise<Record<string, string> | undefined>;
  /** Writes data (tokens, JSON, tables) to stdout. */
  stdout: (text: string) => void;
  /** Writes bytes to stdout unchanged (`fetch`'s answer). */
  stdoutBytes: (bytes: Uint8Array) => void;
  /** Whether stdout is a terminal: then `fetch` writes no control characters or binary data to it. */
  stdoutIsTerminal: boolean;
  /** Writes messages for people to stderr. */
  stderr: (text: string) => void;
  /** Whether a person can answer prompts: stdin and stderr are terminals (not `--interactive`, which is `Config.interactive`). */
  canPrompt: boolean;
  /** Whether stderr is a terminal (a person reads it): the device flow then shows a QR code. Absent: no. */
  stderrIsTerminal?: boolean;
  /** The token cache. */
  storage: Storage;
  /** Aborted on Ctrl-C. */
  signal: AbortSignal;
  /** The limit on each request, to the issuer or an API, in ms (default `HTTP_TIMEOUT_MS`). */
  httpTimeoutMs?: number;
  /** The platform, for choosing the flow: `Deno.build.os`, and whether a command is on PATH. */
  os: string;
  /** Whether a program is on PATH (or a path to an executable file). */
  which: (command: string) => boolean;
  /** Waits; the device flow polls with it, so tests can move a clock instead of sleeping. */
  sleep: (ms: number) => Promise<void>;
  /** Lines typed on stdin (for pasting the address the browser ended on); absent when none can be. */
  readLines?: () => AsyncIterable<string>;
  /** Whether stderr is a terminal that may show a countdown (and NO_COLOR is unset). */
  animate: boolean;
  /** The working directory (`Deno.cwd()`), to tell an inherited `INIT_CWD` from our own task's. */
  cwd?: () => string;
  /**
   * Tests only: an origin (`http://127.0.0.1:PORT`) that replaces the origin of every URL a provider
   * preset names, so a preset can be run against a loopback mock. Never set from flags or variables.
   */
  presetBase?: string;
  /**
   * The timer behind every wait (the browser's `--timeout`, countdown ticks, the lock): resolves after
   * `ms` milliseconds, or at once when `signal` aborts. Absent: the runtime's setTimeout.
   */
  timer?: (ms: number, signal: AbortSignal) => Promise<void>;
  /** Starts turning Ctrl-C into an abort of `signal`; called before the first wait or request, never on the cached-token path. */
  catchInterrupt?: () => void;
  /** The width of stderr in columns: prose is wrapped to it at word boundaries. Absent: no wrapping. */
  columns?: number;
  /** How the person runs the tool, for hints: "oauth-login" (default), "deno task" or "deno run -A login.ts". */
  invokedAs?: string;
  /** All of stdin, for `fetch -d @-` and a subject token from `-`. */
  readStdin?: () => Promise<Uint8Array<ArrayBuffer>>;
  /**
   * Runs a platform keychain tool (`secret-tool`, `/usr/bin/security`, `powershell.exe`): `stdin` is
   * written and closed, and when `signal` aborts (the caller's deadline, Ctrl-C) the tool is killed.
   * The answer: its exit code (null when killed), stdout and stderr; `failure` "missing" when it is not
   * installed, "denied" when Deno's permissions do not let it run (never a prompt). Absent: no keychain.
   */
  runTool?: (
    command: string,
    args: string[],
    options: { stdin?: string; signal: AbortSignal },
  ) => Promise<{ code: number | null; stdout: string; stderr: string; failure?: "missing" | "denied" }>;
  /**
   * The uids that own the two ends of a loopback TCP connection, the callback server's (`ours`) and the
   * client's (`theirs`); undefined when that cannot be told, and a rejection when the telling failed.
   * Linux, from `ss` (iproute2). Absent: not asked, and the start address answers any local program that has it.
   */
  socketOwners?: (local: Deno.NetAddr, remote: Deno.NetAddr) => Promise<{ ours: number; theirs: number } | undefined>;
  /**
   * `exec`: runs `command` with `args` (never through a shell), the tool's stdin, stdout and stderr, and
   * the environment with `env` added and the variables `unset` names left out; passes SIGINT, SIGTERM
   * and SIGHUP on to it. Resolves with its
   * exit code (128 + N when signal N ended it); throws `Deno.errors.NotFound` when there is no such
   * program. Absent: `exec` cannot run anything here.
   */
  runProgram?: (
    command: string,
    options: { args: string[]; env: Record<string, string>; unset?: string[] },
  ) => Promise<number>;
}

/** Something we detected ourselves: a bad flag, an unreachable host, an invalid answer. */
export class LoginError extends Error {
  /** Always "LoginError". */
  override name = "LoginError";
  /** What kind of failure it is; `exitCodeFor` maps it to an exit code (see `EXIT`). */
  readonly code:
    | "usage"
    | "config"
    | "port_in_use"
    | "network"
    | "invalid_response"
    | "denied"
    | "login_required"
    | "timeout"
    | "interrupted"
    | "failure"
    | "not_found"
    | "cannot_run";
  /** The next step to suggest, printed as `hint: …`. */
  readonly hint?: string;
  /** `message`: one sentence, sanitised; `options.hint`: the next step; `options.cause`: the error behind it. */
  constructor(code: ErrorCode, message: string, options?: { hint?: string; cause?: unknown }) {
    super(message, { cause: options?.cause });
    this.code = code;
    this.hint = options?.hint;
  }
}

/** The kinds of `LoginError`. */
type ErrorCode = LoginError["code"];

/** What the authorization server said: its `error`, `error_description` and HTTP status. */
export class ErrorResponse extends Error {
  /** Always "ErrorResponse". */
  override name = "ErrorResponse";
  /** The server's `error` code (RFC 6749 §5.2), e.g. "invalid_grant". */
  readonly code: string;
  /** The server's `error_description`, unsanitised (sanitise before printing). */
  readonly description?: string;
  /** The HTTP status of the answer, when there was one. */
  readonly status?: number;
  /** The next step to suggest, printed as `hint: …`. */
  readonly hint?: string;
  /** `message`: one sentence, sanitised; `options`: the server's code and description, the status, a hint. */
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
function exitCodeFor(error: unknown): number {
  if (error instanceof ErrorResponse) {
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
    case "not_found":
      return EXIT.notFound;
    case "cannot_run":
      return EXIT.cannotRun;
    default:
      return EXIT.failure;
  }
}

const parseUrl = (function parseUrl(text: string): URL | undefined {
  try {
    return new URL(text);
  } catch {
    return undefined;
  }
}).bind(undefined);

/** `env`, reading each variable once. */
const remembered = (function remembered(env: (name: string) => string | undefined) {
  const read = new Map<string, string | undefined>();
  return (name: string): string | undefined => {
    if (!read.has(name)) read.set(name, env(name));
    return read.get(name);
  };
}).bind(undefined);

/** `127.0.0.1`, `[::1]` and `localhost`: the only hosts we listen on, and an issuer's only plain-http hosts. */
function isLoopbackHost(hostname: string): boolean {
  return hostname === "127.0.0.1" || hostname === "[::1]" || hostname === "localhost";
}

let oauthModule: typeof Oauth | undefined;

/** oauth4webapi, loaded when a command first needs the protocol (the cached-token path does not). */
async function lib(): Promise<typeof Oauth> {
  return oauthModule ??= await import("npm:oauth4webapi@3.8.8");
}

/** A timer that can be awaited and cancelled. */
function delay(ms: number): { done: Promise<void>; cancel: () => void } {
  let id: ReturnType<typeof setTimeout> | undefined;
  const done = new Promise<void>((resolve) => id = setTimeout(resolve, ms));
  return { done, cancel: () => clearTimeout(id) };
}

/** What one wait is for, and how it ends. */
interface WaitOptions<T> {
  /** The longest wait, in milliseconds. */
  ms: number;
  /** What the wait is for; absent, the wait is a pause of `ms`. */
  until?: Promise<T>;
  /** Once this settles, the clock stops and only `until` (or Ctrl-C) ends the wait. */
  stopClock?: Promise<unknown>;
  /** The error when `ms` runs out; absent, running out ends the wait with undefined. */
  onTimeout?: () => Error;
  /** The message of the "interrupted" error that Ctrl-C ends the wait with. */
  interrupted: string;
  /** Runs at the start and about once a second with the milliseconds left, for a countdown. */
  tick?: (leftMs: number) => void;
  /** The timer to use instead of `deps.timer` (the device flow's polls use `deps.sleep`). */
  sleep?: (ms: number) => Promise<void>;
}

/**
 * The one wait: every wait for the person, the server or another process goes through here. It ends
 * with `until`'s value, when `ms` runs out (undefined, or `onTimeout()` thrown), or on Ctrl-C
 * (`LoginError` "interrupted"), whichever comes first. Time is counted on the injected timer.
 */
async function wait<T>(deps: Deps, options: WaitOptions<T>): Promise<T | undefined> {
  deps.catchInterrupt?.();
  const stop = new AbortController();
  const timer = options.sleep ?? ((ms: number) => (deps.timer ?? realTimer)(ms, stop.signal));
  let onAbort: (() => void) | undefined;
  const interrupted = new Promise<never>((_, reject) => {
    onAbort = () => reject(new LoginError("interrupted", options.interrupted));
    if (deps.signal.aborted) onAbort();
    else deps.signal.addEventListener("abort", onAbort, { once: true });
  });
  const outcome = options.until?.then((value) => ({ value }));
  const forever = new Promise<never>(() => {});
  const TICK = Symbol("tick");
  const STOPPED = Symbol("stopped");
  try {
    let left = options.ms;
    let clock = true;
    const stopped = options.stopClock?.then(() => STOPPED, () => STOPPED);
    while (clock) {
      options.tick?.(left);
      if (left <= 0) break;
      const step = options.tick ? Math.min(left, 1000) : left;
      const first = await Promise.race([
        outcome ?? forever,
        timer(step).then(() => TICK),
        interrupted,
        stopped ?? forever,
      ]);
      if (typeof first === "object") return first.value;
      if (first === STOPPED) clock = false;
      else left -= step;
    }
    if (!clock) return (await Promise.race([outcome ?? forever, interrupted])).value;
    if (options.onTimeout) throw options.onTimeout();
    return undefined;
  } finally {
    stop.abort();
    deps.signal.removeEventListener("abort", onAbort!);
  }
}

/** The runtime's timer: resolves after `ms`, or at once when `signal` aborts (then no timer is left behind). */
function realTimer(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const id = setTimeout(() => {
      signal.removeEventListener("abort", cancel);
      resolve();
    }, ms);
    const cancel = () => {
      clearTimeout(id);
      resolve();
    };
    signal.addEventListener("abort", cancel, { once: true });
  });
}

// ── 2 Messages: every sentence the tool prints, and how it is chosen, wrapped and sanitised ────────────────────────

/** What `sanitize` replaces with a space: characters a terminal or a log viewer would act on, or hide. */
const INVISIBLE =
  // deno-lint-ignore no-control-regex
  /[\x00-\x1f\x7f-\x9f\u00ad\u061c\u115f\u1160\u180e\u200b-\u200f\u2028-\u202e\u2060-\u206f\u3164\ufeff\uffa0\u{e0000}-\u{e007f}]/gu;

/** The longest server string we print or put on a page. */
const MAX_DISPLAY_CHARS = 300;

/** Strips control characters, escape sequences and bidi overrides from a server string. */
const sanitize: (text: unknown, max?: number) => string =
  (function sanitize(text: unknown, max = MAX_DISPLAY_CHARS): string {
    const clean = String(text)
      // deno-lint-ignore no-control-regex
      .replace(/(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]|(?:\x1b\]|\x9d)[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?|\x1b./g, "")
      // Controls, bidi marks and overrides, line and paragraph separators, and the invisible ones that can hide
      // or fake text (zero-width, word joiners, BOM, soft hyphen, Hangul fillers, tag characters).
      .replace(INVISIBLE, " ");
    return clean.length > max ? `${clean.slice(0, max)}…` : clean;
  }).bind(undefined);

/** Escapes text for HTML. */
function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function plural(n: number, unit: string): string {
  return `${n} ${unit}${n === 1 ? "" : "s"}`;
}

function seconds(ms: number): string {
  if (ms >= 120_000 && ms % 60_000 === 0) return plural(ms / 60_000, "minute");
  return ms % 1000 === 0 ? plural(ms / 1000, "second") : `${ms / 1000} seconds`;
}

/** "2 minutes", "3 hours", "2 days": a duration in ms, roughly. */
function roughDuration(ms: number): string {
  const minutes = Math.round(Math.abs(ms) / 60_000);
  return minutes < 120
    ? plural(minutes, "minute")
    : minutes < 48 * 60
    ? plural(Math.round(minutes / 60), "hour")
    : plural(Math.round(minutes / 1440), "day");
}

/** "in 59 minutes", "3 minutes ago". */
function relativeTime(at: number, now: number): string {
  const minutes = Math.round(Math.abs(at - now) / 60_000);
  const amount = minutes < 1 ? "less than a minute" : roughDuration(at - now);
  return at >= now ? `in ${amount}` : `${amount} ago`;
}

/** "4:59": minutes and seconds, rounded up. */
function clockText(ms: number): string {
  const left = Math.max(0, Math.ceil(ms / 1000));
  return `${Math.floor(left / 60)}:${String(left % 60).padStart(2, "0")}`;
}

/** An issuer as people write it: without the slash `URL` adds to a bare origin. */
function displayIssuer(issuer: string): string {
  return sanitize(issuer.endsWith("/") && new URL(issuer).pathname === "/" ? issuer.slice(0, -1) : issuer);
}

/**
 * A value as one word a POSIX shell reads as it is, for a hint a person may paste: bare when it holds
 * only characters no shell acts on, else in single quotes (a `'` inside as `'\''`). Every value in a
 * command a hint offers goes through here, wherever it came from: a server's issuer, a project file's
 * endpoint, a path. Sanitised first (no control characters). Pure.
 */
const shellWord = (function shellWord(value: string): string {
  const text = sanitize(value);
  return /^[\w.:/@%+=,-]+$/.test(text) ? text : `'${text.replaceAll("'", "'\\''")}'`;
}).bind(undefined);

/**
 * Wraps prose at word boundaries to `width` columns. A long URL, or a quoted command longer than a
 * line, stands alone on its own line, unbroken, so a terminal can select it whole. Continuation lines are indented past an `error: `-style
 * label (or the line's own indent). Existing newlines are kept.
 */
function wrap(text: string, width: number): string {
  return text.split("\n").map((line) => {
    if (line.length <= width) return line;
    const label = line.match(/^(?:error|hint|warning|note): |^ +/)?.[0] ?? "";
    const indent = " ".repeat(label.length);
    const lines: string[] = [];
    let current = label;
    let empty = true;
    // A quoted command to run ("oauth-login login --issuer …") is one unit too, so it can be copied whole.
    for (const word of line.slice(label.length).match(/"(?:oauth-login|deno) [^"]*"\S*|\S+/g) ?? []) {
      const url = (word.length > 30 && /https?:\/\//.test(word)) || word.length > width - indent.length;
      if (empty && !url) {
        current += word;
        empty = false;
      } else if (!url && current.length + 1 + word.length <= width) {
        current += ` ${word}`;
      } else {
        if (!empty || label.trim()) lines.push(current.trimEnd());
        current = indent + word;
        empty = false;
        if (url) {
          lines.push(current);
          current = indent;
          empty = true;
        }
      }
    }
    if (!empty) lines.push(current);
    return lines.join("\n");
  }).join("\n");
}

/** Writes prose to stderr, wrapped to its width when that is known; adds the final newline. */
function say(deps: Pick<Deps, "stderr" | "columns">, text: string): void {
  deps.stderr(`${deps.columns ? wrap(text, deps.columns) : text}\n`);
}

/** The command line that runs `name` as the person runs this tool (`oauth-login login`, `deno task login`, ...). */
function command(deps: Pick<Deps, "invokedAs">, name: string): string {
  const prefix = deps.invokedAs ?? "oauth-login";
  if (prefix === "deno task") return `deno task ${name === "status" ? "whoami" : name}`;
  return `${prefix} ${name}`;
}

/** A hint with its `"oauth-login COMMAND` commands rewritten as the person runs the tool. */
function hintFor(hint: string, deps: Pick<Deps, "invokedAs">): string {
  return hint.replace(/"oauth-login ([a-z]+|COMMAND)/g, (_, name) => `"${command(deps, name)}`);
}

/** Columns padded to their widest cell, two spaces apart. */
function columns(rows: string[][]): string {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((row) => row[i].length)));
  return rows.map((row) => row.map((cell, i) => i === row.length - 1 ? cell : cell.padEnd(widths[i])).join("  "))
    .join("\n") + "\n";
}

/**
 * The closest of `candidates` to `word` for "did you mean …?": at most two edits (insertions,
 * deletions, substitutions, adjacent transpositions) and fewer than half the candidate's length;
 * undefined when none is that close.
 */
function closest(word: string, candidates: Iterable<string>): string | undefined {
  let best: string | undefined;
  let bestDistance = 3;
  for (const candidate of candidates) {
    const d = editDistance(word.toLowerCase(), candidate);
    if (d < bestDistance && d < Math.max(2, candidate.length / 2)) {
      best = candidate;
      bestDistance = d;
    }
  }
  return best;
}

/** The edit distance between two short strings (insertions, deletions, substitutions, adjacent swaps). */
function editDistance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0][j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1);
      }
    }
  }
  return d[a.length][b.length];
}

/** Every message in an error's cause chain, outermost first. */
function causeChain(error: unknown): string[] {
  const messages: string[] = [];
  for (let e = error, depth = 0; e !== undefined && depth < 8; e = (e as { cause?: unknown }).cause, depth++) {
    messages.push(e instanceof Error ? `${e.name}: ${e.message}` : String(e));
    if (!(e instanceof Error)) break;
  }
  return messages;
}

/**
 * The reason a request failed, in words, from the whole cause chain (Deno's own message is just
 * "fetch failed"): the name did not resolve, the connection was refused, TLS failed (with the
 * runtime's detail), a timeout, a reset, or else the innermost message, sanitised. Never throws.
 */
function networkReason(error: unknown): string {
  const chain = causeChain(error).join(" | ");
  if (
    /dns error|failed to lookup address|name or service not known|nodename nor servname|no such host|name resolution/i
      .test(chain)
  ) {
    return "the name did not resolve (DNS lookup failed)";
  }
  if (/connection refused|os error 111|econnrefused/i.test(chain)) {
    return "the connection was refused (nothing listens on that port)";
  }
  if (/certificate|tls|ssl|handshake|corrupt message|UnknownIssuer/i.test(chain)) {
    const detail = chain.match(/(invalid peer certificate[^|]*|received corrupt message[^|]*|certificate[^|]*)/i)?.[1];
    return `TLS failed${detail ? ` (${sanitize(detail.trim(), 100)})` : ""}`;
  }
  if (/timed out|timedout|deadline/i.test(chain)) return "the connection timed out";
  if (/connection reset|broken pipe/i.test(chain)) return "the connection was reset";
  const blocked = chain.match(/requests to port (\d+) are blocked/i);
  if (blocked) return `port ${blocked[1]} is one that fetch refuses (it belongs to another protocol)`;
  const last = causeChain(error).at(-1) ?? "unknown error";
  return sanitize(last.replace(/^(TypeError|Error): /, "").split("\n")[0], 160);
}

/**
 * The reason and the next step for a request that got no answer; `urlName` is what the person gave
 * the address as ("the issuer URL", or "the URL" for an API).
 */
function networkFailure(
  error: unknown,
  url: URL,
  env: (name: string) => string | undefined,
  urlName = "the issuer URL",
): { reason: string; hint: string } {
  const reason = networkReason(error);
  if (reason.startsWith("the name did not resolve")) {
    return {
      reason,
      hint: `check your network connection, the host name "${
        sanitize(url.hostname)
      }" in ${urlName}, and your DNS or VPN`,
    };
  }
  if (reason.startsWith("port ")) {
    return {
      reason,
      hint: `check the port in ${urlName} (${sanitize(url.host)})${
        urlName === "the issuer URL" ? ": an OAuth server is never there" : ""
      }`,
    };
  }
  if (reason.startsWith("the connection was refused")) {
    return {
      reason,
      hint: `check your network connection, and that the server runs at ${sanitize(url.host)} (${urlName}'s port)`,
    };
  }
  if (reason.startsWith("TLS failed")) {
    const cert = env("DENO_CERT");
    const store = env("DENO_TLS_CA_STORE");
    const ca = cert
      ? `DENO_CERT=${shellWord(cert)}`
      : store
      ? `DENO_TLS_CA_STORE=${sanitize(store)}`
      : "the default CA store (DENO_CERT and DENO_TLS_CA_STORE are unset)";
    return {
      reason,
      hint:
        `check your network connection (a proxy that intercepts TLS?); the certificates trusted were ${ca}; for a private CA, set DENO_CERT to its PEM file`,
    };
  }
  return { reason, hint: `check your network connection, proxy settings (HTTPS_PROXY) and ${urlName}` };
}

/**
 * An https issuer on this machine (127.0.0.1, [::1], localhost) whose server does not speak TLS at
 * all (the handshake gets plain bytes) is a development server that speaks plain http: the hint is
 * the same issuer with `http://`, not CAs and proxies. Other errors are returned as they are. Pure.
 */
function plainHttpIssuer(error: unknown, config: Pick<Config, "issuer" | "metadataUrl">): unknown {
  const url = parseUrl(config.metadataUrl ?? config.issuer);
  if (!(error instanceof LoginError) || error.code !== "network" || !url || url.protocol !== "https:") return error;
  // Only a peer that does not speak TLS at all: an untrusted certificate is a CA question.
  if (!isLoopbackHost(url.hostname) || !/: TLS failed \(received corrupt message/.test(error.message)) return error;
  const plain = `http:${(config.metadataUrl ?? displayIssuer(config.issuer)).slice("https:".length)}`;
  return new LoginError("network", error.message, {
    hint: `the server at ${url.host} answered, but not with TLS: a development server on this machine ` +
      `usually speaks plain http, so use --issuer ${shellWord(plain)}`,
    cause: error,
  });
}

/**
 * The sender's failure as the LoginError to throw: as it was, interrupted, timed out (`limit` ms), the
 * proxy's failure (blamed on the proxy, never on the server behind it), or the network's.
 */
function fetchFailure(
  error: unknown,
  { deps, interruptible, method, url, timeout, limit, route, urlName }: {
    deps: Deps;
    interruptible: boolean;
    method: string;
    url: URL;
    timeout: AbortSignal;
    limit: number;
    route: Route | undefined;
    urlName?: string;
  },
): LoginError {
  if (error instanceof LoginError) return error;
  if (interruptible && deps.signal.aborted) return new LoginError("interrupted", "Interrupted");
  const where = `${method} ${url.origin}${url.pathname}`;
  const host = url.host;
  if (timeout.aborted) {
    return new LoginError("network", `The server at ${host} did not answer within ${seconds(limit)}`, {
      hint: `${where} timed out: check your network connection and ${urlName ?? "the issuer URL"}`,
      cause: error,
    });
  }
  if (route?.proxy) {
    const via = ` through the proxy ${describeProxy(route.proxy)} (${route.reason})`;
    const reason = error instanceof Error ? error.message.split("\n")[0] : String(error);
    // Deno's cause ends in what went wrong: "…client error (Connect): unsuccessful tunnel".
    const detail = error instanceof Error && error.cause instanceof Error
      ? error.cause.message.split("\n")[0].replace(/^.*\): /, "")
      : "";
    return new LoginError(
      "network",
      `Cannot reach ${host}${via}: ${
        detail
          ? /tunnel|proxy/i.test(detail)
            ? `the proxy answered with an error (${sanitize(detail, 120)})`
            : sanitize(detail, 160)
          : sanitize(reason, 160)
      } (${where})`,
      {
        hint: /authentication/i.test(detail)
          ? `the proxy wants credentials: put them in ${route.reason} as http://USER:PASSWORD@HOST:PORT`
          : `the proxy could not reach ${url.hostname}: check ${route.reason}, or add the host to NO_PROXY`,
        cause: error,
      },
    );
  }
  const failure = networkFailure(error, url, deps.env, urlName);
  return new LoginError("network", `Cannot reach ${host}: ${failure.reason} (${where})`, {
    hint: failure.hint,
    cause: error,
  });
}

/** Turns what oauth4webapi threw into one of our errors, saying what we were trying to do. */
async function explain(error: unknown, doing: string): Promise<unknown> {
  if (error instanceof LoginError || error instanceof ErrorResponse) return error;
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

function serverError(doing: string, code: string, description?: string, status?: number): ErrorResponse {
  const detail = description ? ` (${sanitize(description)})` : "";
  const hints: Record<string, string> = {
    invalid_client: "check the client id and secret, and the client authentication (--client-auth)",
    invalid_grant: "the code or token was rejected: run the login again",
    unauthorized_client: "check that the client is allowed to use this grant at the server",
    invalid_scope: "check --scope against the scopes the server offers",
    access_denied: "run the login again and approve the request in the browser",
  };
  const what = code === "access_denied" ? "Sign-in was declined" : `Cannot ${doing}`;
  const needsDpop = /\bDPoP\b/i.test(description ?? "") && /not provided|required/i.test(description ?? "");
  return new ErrorResponse(`${what}: the server answered "${sanitize(code, 60)}"${detail}`, {
    code,
    description,
    status,
    hint: needsDpop ? "this client must use DPoP: pass --dpop (or set OAUTH_DPOP=1) and sign in again" : hints[code],
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

/**
 * Says how two issuer identifiers differ: "the host", "the scheme and the port", "a trailing slash".
 * Pure.
 */
function issuerDifference(asked: string, said: string): string {
  const a = parseUrl(asked);
  const b = parseUrl(said);
  if (!a || !b) return "they are not the same URL";
  const parts: string[] = [];
  if (a.protocol !== b.protocol) parts.push("the scheme");
  if (a.hostname !== b.hostname) parts.push("the host");
  if (a.port !== b.port) parts.push("the port");
  if (a.pathname !== b.pathname) {
    const bare = (path: string) => path.replace(/\/+$/, "");
    if (bare(a.pathname) === bare(b.pathname) && parts.length === 0) return "they differ by a trailing slash";
    parts.push("the path");
  }
  return parts.length === 0 ? "they differ in how they are written" : `they differ in ${parts.join(" and ")}`;
}

/** The error for an issuer that is not the one configured, saying what differs and which flag to use. */
function issuerMismatch(config: Config, said: string): LoginError {
  const shown = sanitize(said);
  const tenants = presetOf(config)?.tenants;
  if (said.includes("{tenantid}")) {
    const aliases = tenants?.aliases ?? [];
    return new LoginError(
      "config",
      `The server names the issuer template "${shown}", which is accepted only for the tenants ${
        aliases.length > 0 ? aliases.join(", ") : "of a provider preset that has them (--provider)"
      }`,
      {
        hint: aliases.length > 0
          ? `use --tenant ${shellWord(aliases[0])} (or ${aliases.slice(1).join(", ")}), or your tenant's GUID`
          : undefined,
      },
    );
  }
  const tenantGuid = said.match(/\/([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\/v2\.0\/?$/i)?.[1];
  const byTenant = tenants && config.sources.issuer === "default" && tenantGuid;
  const difference = issuerDifference(config.issuer, said);
  return new LoginError("config", `Issuer mismatch: asked for "${config.issuer}", the server says "${shown}"`, {
    hint: byTenant
      ? `${difference}: the tenant "${sanitize(config.tenant)}" is ${tenantGuid} at the server; use --tenant ${
        shellWord(tenantGuid)
      }`
      : `${difference}: if the server's value is the one you meant, use --issuer ${shellWord(said)}`,
  });
}

/** The hint for a rejected authorization request, naming what was sent. */
function rejectedRequestHint(clientId: string, redirectUri: string): string {
  return `check that the client id "${sanitize(clientId)}" exists at the server and has this redirect URI ` +
    `registered (a loopback one may need any port allowed): ${sanitize(redirectUri)}`;
}

/**
 * The browser flow's timeout, blaming what the tool does not already know to be fine: the client id
 * and redirect URI only when the server could not say it accepts them (`checked`: PAR or the preflight
 * passed), the browser when none could be opened (`notOpened`: why).
 */
function browserTimeout(
  config: Config,
  deps: Pick<Deps, "invokedAs">,
  what: { redirectUri: string; checked: boolean; notOpened?: string; deviceOffered?: boolean },
): LoginError {
  const again = `run the login again ("${command(deps, "login")}${loginFlags(config)}")`;
  const more = "or give more time with --timeout SECONDS";
  const hint = what.notOpened !== undefined
    ? `no browser could be opened here (${what.notOpened}): ${again} and open the address it prints yourself` +
      (what.deviceOffered
        ? `, or use the device flow: "${command(deps, "login")} --flow device${loginFlags(config)}"`
        : "")
    : what.checked
    ? `${again} and finish it in the browser, ${more}; the server accepted the client id and the redirect URI, ` +
      "so neither is the cause"
    : `${again} and finish it in the browser, ${more}. A sign-in that never comes back is most often a wrong ` +
      `client id ("${sanitize(config.clientId)}") or a redirect URI the server does not accept ` +
      `(${sanitize(what.redirectUri)}): check both`;
  return new LoginError("timeout", `No answer from the browser within ${seconds(config.timeoutMs)}`, { hint });
}

/**
 * No browser could be opened and nobody is at a terminal to open the address or paste one back
 * (a pipe, CI): said at once instead of a wait for nothing, with the flow that works (`reason`: why
 * no browser).
 */
function noBrowser(config: Config, reason: string, deviceOffered: boolean): LoginError {
  return new LoginError(
    "login_required",
    `No browser can be opened here (${reason}), and no one at a terminal can open the address or paste one back`,
    {
      hint: deviceOffered
        ? `use the device flow, which needs no browser here: run "oauth-login login --flow device${
          loginFlags(config)
        }" where its code can be read`
        : `run "oauth-login login${
          loginFlags(config)
        }" in a terminal, where you can open the address it prints or paste back the one the browser ends on`,
    },
  );
}

/** Where a setting came from, as the person would find it: `--client-secret`, `OAUTH_CLIENT_SECRET in the environment`. */
function settingOrigin(config: Pick<Config, "sources" | "profile">, key: string): string {
  const variable = (ENV_VARS as Record<string, string>)[key];
  switch (config.sources[key]) {
    case "flag":
      return `--${flagOf(key)}`;
    case "environment":
      return `${variable} in the environment`;
    case ".env":
      return `${variable} in .env`;
    case "profile":
      return `${profileKey(flagOf(key))} in the profile "${sanitize(config.profile)}"`;
    default:
      return variable ?? key;
  }
}

/**
 * The hint for "invalid_client" from an endpoint that authenticates the client (PAR, token, device
 * authorization; RFC 6749 §5.2): what was sent, by which method, and where the secret or key came
 * from, so that the person fixes the one thing that is wrong. Pure.
 */
function clientRefusedHint(
  config: Pick<Config, "clientId" | "sources" | "profile" | "trust" | "clientKey" | "clientAuth">,
  authMethod: ClientAuthMethod,
): string {
  const id = `"${sanitize(config.clientId)}"`;
  if (authMethod === "private_key_jwt") {
    return `a client assertion signed with the key from ${settingOrigin(config, "clientKey")} was sent ` +
      `(private_key_jwt): check that its public half is registered for the client ${id} (and its kid), ` +
      "and --assertion-audience";
  }
  const secret = settingOrigin(config, "clientSecret");
  if (authMethod === "client_secret_jwt") {
    return `a client assertion signed with the client secret from ${secret} was sent (client_secret_jwt): ` +
      `check that secret, and that the client ${id} is registered for client_secret_jwt`;
  }
  if (authMethod !== "none") {
    const other = authMethod === "client_secret_basic" ? "client_secret_post" : "client_secret_basic";
    return `the client secret from ${secret} was sent (${authMethod}): check that it is the current secret of the ` +
      `client ${id}, and the client id; a client registered for ${other} needs --client-auth ${other}`;
  }
  const chosen = config.sources.clientAuth;
  if (config.clientAuth === "none" && chosen && config.sources.clientSecret) {
    // A secret was set, and --client-auth none (or its variable) left it out.
    const drop = chosen === "flag"
      ? "drop --client-auth none"
      : chosen === "profile"
      ? `remove client_auth from the profile "${sanitize(config.profile)}"`
      : `unset ${ENV_VARS.clientAuth}${chosen === ".env" ? " in .env" : ""}`;
    return `no client secret was sent: ${settingOrigin(config, "clientAuth")} says "none", so ${secret} ` +
      `was left out; ${drop} to send it`;
  }
  const withheld = config.trust ? withheldSecretHint(config.trust) : undefined;
  return `check that the client id ${id} exists at the server; no client secret was sent (client ` +
    `authentication "none"), so if the client is confidential, ${
      withheld ?? `set ${ENV_VARS.clientSecret} to its secret`
    }`;
}

/**
 * A better hint for a refused code or device exchange: "invalid_client" names what was sent
 * (`clientRefusedHint`); "invalid_grant" from a server that offers DPoP, when we sent no proof, names
 * --dpop (the client may be registered for DPoP-bound tokens, and oidc-provider says no more than
 * "grant request is invalid").
 */
function exchangeHint(error: unknown, issuer: IssuerClient, config: Config): unknown {
  if (error instanceof ErrorResponse && error.code === "invalid_client") {
    return new ErrorResponse(error.message, {
      code: error.code,
      description: error.description,
      status: error.status,
      hint: clientRefusedHint(config, issuer.authMethod),
      cause: error,
    });
  }
  if (!(error instanceof ErrorResponse) || error.code !== "invalid_grant" || issuer.dpop) return error;
  if (!Array.isArray(issuer.as.dpop_signing_alg_values_supported) || error.hint?.includes("--dpop")) return error;
  return new ErrorResponse(error.message, {
    code: error.code,
    description: error.description,
    status: error.status,
    hint: "run the login again; if this client requires DPoP-bound tokens, pass --dpop (or set OAUTH_DPOP=1)",
    cause: error,
  });
}

/**
 * A cached access token that cannot go into an HTTP header (not RFC 6750 `b64token`, see `B64TOKEN`):
 * it is neither printed nor sent, and a new sign-in replaces it.
 */
function unusableToken(config: Config): LoginError {
  return new LoginError(
    "login_required",
    `The cached access token for ${displayIssuer(config.issuer)} cannot be used in an HTTP header`,
    { hint: `sign in again to replace it: run "oauth-login login${loginFlags(config)}"` },
  );
}

/** `named`: the issuer as a cached entry's metadata names it, when there is an entry. */
function loginRequired(config: Config, why: string, options: { hint?: string; named?: unknown } = {}): LoginError {
  const issuer = typeof options.named === "string" ? sanitize(options.named) : displayIssuer(config.issuer);
  const login = `"oauth-login login${loginFlags(config)}"`;
  return new LoginError("login_required", `${why} for ${issuer}`, {
    hint: options.hint ??
      (config.command === "token" || config.command === "exec"
        ? `run ${login} (or pass --interactive to let this command sign you in)`
        : `run ${login}`),
  });
}

/**
 * The settings of this command, as flags for the login it suggests: without them the suggested command
 * would log in somewhere else, or under another cache entry (audience, resources), or find no issuer.
 * `everywhere`: also the settings that came from the environment (kubectl's exec block sets them, and
 * the person's own shell does not have them); never the `.env`'s, which the folder still holds and which
 * as flags would become the person's own (SECURITY.md 13). Secrets are never repeated.
 */
function loginFlags(config: Config, everywhere = false): string {
  const shown = (key: string) => {
    const source = config.sources[key];
    return source === "flag" || (everywhere && source === "environment");
  };
  const given: [string, string | undefined][] = [
    ["issuer", shown("issuer") ? config.metadataUrl ?? displayIssuer(config.issuer) : undefined],
    ["client-id", shown("clientId") ? config.clientId : undefined],
    ["scope", shown("scope") ? config.scope : undefined],
    ["provider", shown("provider") ? config.provider : undefined],
    ["tenant", shown("tenant") ? config.tenant : undefined],
    // Every endpoint given by hand: they are part of the cache key.
    ...MANUAL_ENDPOINTS.map((
      [key, flag],
    ): [string, string | undefined] => [flag, shown(key) ? config[key] : undefined]),
    ["profile", config.profile],
    // A grant without a person and its sources: part of the cache key too.
    ...GRANT_KEYS.map((key): [string, string | undefined] => [flagOf(key), shown(key) ? config[key] : undefined]),
    // A profile's own are said by --profile.
    ["audience", config.sources.audience === "profile" ? undefined : config.audience],
    ...(config.sources.resource === "profile" ? [] : config.resources ?? []).map((
      resource,
    ): [string, string] => ["resource", resource]),
    // Parameters that are part of the cache key, given with --param.
    ...config.params
      .filter(([key, value]) =>
        (key === "resource" && !config.resources?.includes(value)) || (key === "audience" && value !== config.audience)
      )
      .map(([key, value]): [string, string] => ["param", `${key}=${value}`]),
  ];
  // --dpop too: a login without it would cache the Bearer token that the command refused.
  const dpop = config.dpop && shown("dpop") ? " --dpop" : "";
  return given.filter(([, value]) => value).map(([flag, value]) => ` --${flag} ${shellWord(value!)}`).join("") + dpop;
}

/**
 * The one sentence for a Deno permission the run was not given (`NotCapable`, possibly wrapped as
 * the cause of one of our errors), naming the flag to add; undefined for any other error.
 */
function permissionProblem(error: unknown): LoginError | undefined {
  let cause = error;
  for (let depth = 0; cause instanceof Error && depth < 5; depth++, cause = cause.cause) {
    if (!(cause instanceof Deno.errors.NotCapable)) continue;
    // Deno says: Requires env access to "HOME", run again with the --allow-env flag
    const match = cause.message.match(/Requires (\S+) access to "?([^",]*)"?.*?(--allow-[a-z-]+)/);
    const flag = match
      ? `${match[3]}${match[2] && match[3] !== "--allow-all" ? `=${shellWord(match[2])}` : ""}`
      : "--allow-…";
    const what = match ? `${match[1]} access${match[2] ? ` to "${sanitize(match[2], 120)}"` : ""}` : "a permission";
    return new LoginError("config", `Deno's permissions do not allow ${what}`, {
      hint: `run again with ${sanitize(flag, 160)} (the deno.json tasks grant what the tool needs)`,
      cause,
    });
  }
  return undefined;
}

function report(error: unknown, deps: Deps, verbose: boolean): number {
  error = permissionProblem(error) ?? error;
  const code = exitCodeFor(error);
  if (error instanceof LoginError || error instanceof ErrorResponse) {
    say(deps, `error: ${error.message}`);
    if (error.hint) say(deps, `hint: ${hintFor(error.hint, deps)}`);
  } else {
    const message = error instanceof Error ? error.message : String(error);
    say(deps, `error: ${sanitize(message)}`);
    if (!verbose) deps.stderr("hint: run again with --verbose for details\n");
  }
  if (verbose && error instanceof Error) {
    for (const cause of causeChain(error).slice(1)) deps.stderr(`cause: ${sanitize(cause, 400)}\n`);
    if (error.stack) deps.stderr(`${error.stack}\n`);
  }
  return code;
}

/**
 * The lines that say who decided where credentials go: a note on every run when the `.env` (shown as
 * `envFile`) decided it, and one warning for each kind of setting set aside. Pure.
 */
function trustLines(
  config: Pick<Config, "trust" | "issuer" | "tokenEndpoint" | "sources" | "provider">,
  envFile: string,
): string[] {
  const trust = config.trust;
  if (!trust) return [];
  const lines: string[] = [];
  const list = (items: string[]) =>
    items.length < 2 ? items.join("") : `${items.slice(0, -1).join(", ")} and ${items[items.length - 1]}`;
  if (trust.decidedBy === ".env") {
    const what = config.sources.provider === ".env" && config.sources.issuer !== ".env"
      ? `the ${config.provider} preset${withoutIssuer(config) ? "" : ` (issuer ${config.issuer})`}`
      : withoutIssuer(config)
      ? `the token endpoint ${config.tokenEndpoint}`
      : `the issuer ${config.issuer}`;
    lines.push(`note: Using ${sanitize(what)} from ${envFile}, a project file`);
  }
  if (trust.ignored.length > 0) {
    const names: string[] = CREDENTIAL_KEYS.map((key) => (ENV_VARS as Record<string, string>)[key]);
    const credentials = trust.ignored.some((name) => names.includes(name));
    lines.push(
      `warning: Ignoring ${list(trust.ignored)} in ${envFile}: a project file cannot change where you sign in${
        credentials ? " or the credentials sent there" : ""
      } (set by ${trust.by[0]})`,
    );
  }
  for (const { name, by } of trust.kept) {
    const what = PROTECTIONS.find(({ key }) => (ENV_VARS as Record<string, string>)[key] === name)?.what;
    lines.push(`warning: Ignoring ${name} in ${envFile}: a project file cannot turn off ${what}, which ${by} turns on`);
  }
  if (trust.withheld.length > 0) {
    const origins = [...new Set(trust.withheld.map(({ from }) => from))];
    const named = origins.map((from) =>
      `${list(trust.withheld.filter((w) => w.from === from).map((w) => w.name))} from ${from}`
    );
    lines.push(
      `warning: Not using ${list(named)} with the server that ${envFile} chose; set ${ENV_VARS.issuer} ` +
        "in the environment too if they are meant for it",
    );
  }
  return lines;
}

/**
 * Says who decided where credentials go (`trustLines`), and refuses `--save-profile` when a `.env`
 * did. The note is one line written as it is (no terminal width asked for): it shows on every
 * cached token too.
 */
function announceTrust(config: Config, deps: Deps, envFile: string, saving: string | undefined): void {
  for (const line of trustLines(config, envFile)) {
    if (line.startsWith("note: ")) deps.stderr(`${line}\n`);
    else say(deps, line);
  }
  if (saving !== undefined && config.trust?.decidedBy === ".env") {
    throw cannotSaveProjectDestination(saving, config, envFile);
  }
}

/** The hint for a missing secret when the environment's was withheld from a `.env`'s server. */
function withheldSecretHint(trust: Trust): string | undefined {
  if (!trust.withheld.some(({ name }) => name === ENV_VARS.clientSecret)) return undefined;
  return `set ${ENV_VARS.issuer} in the environment too if your ${ENV_VARS.clientSecret} is meant for this server`;
}

/**
 * Warnings for a `.env`'s keys: look-alikes of ours, ours that are read from the environment only, and
 * the token sources a project file may never name (`SOURCE_KEYS`: they would make the tool read the
 * person's files, variables or CI identity and send them). Pure.
 */
function dotenvWarnings(dotenv: Record<string, string>): string[] {
  const warnings = [...(dotenvProblems.get(dotenv) ?? []), ...misspeltKeys(dotenv)];
  for (const name of [ENV_VARS.cache, ENV_VARS.config]) {
    if (dotenv[name] !== undefined) {
      warnings.push(`The .env key "${name}" is ignored: this tool reads it from the environment only`);
    }
  }
  if (dotenv[ENV_VARS.tokenStorage] !== undefined) {
    warnings.push(
      `The .env key "${ENV_VARS.tokenStorage}" is ignored: where your tokens are kept is yours to choose ` +
        "(in the environment, a profile or with --token-storage), never a project file's",
    );
  }
  for (const key of SOURCE_KEYS) {
    if (dotenv[ENV_VARS[key]] === undefined) continue;
    warnings.push(
      `The .env key "${ENV_VARS[key]}" is ignored: a project file cannot choose ${
        key === "subjectAudience"
          ? "whom your CI identity token is made for"
          : "which of your tokens, files or variables this tool reads and sends"
      }; set it in the environment or pass --${flagOf(key)}`,
    );
  }
  return warnings;
}

// ── 3 Configuration: flags, the environment and .env become a Config ───────────────────────────────────────────────

/** A command (`status` is read as `whoami`). */
type Command = Config["command"];

/** What `token` prints: the bare token, JSON, a kubectl ExecCredential, or header lines for curl. */
type OutputFormat = Config["format"];

/** How to sign in. */
type Flow = Config["flow"];

/** Where a setting came from. */
type ValueSource = Config["sources"][string];

/** A client authentication method (RFC 6749 §2.3, RFC 7523 §2.2, OpenID Connect Core §9). */
type ClientAuthMethod = NonNullable<Config["clientAuth"]>;

/** What `fetch` sends, and what a `token --format headers` DPoP proof is for. */
type ResourceRequest = NonNullable<Config["request"]>;

const CLIENT_AUTH_METHODS: readonly ClientAuthMethod[] = [
  "none",
  "client_secret_basic",
  "client_secret_post",
  "private_key_jwt",
  "client_secret_jwt",
];

const ENV_VARS = {
  issuer: "OAUTH_ISSUER",
  clientId: "OAUTH_CLIENT_ID",
  clientSecret: "OAUTH_CLIENT_SECRET",
  scope: "OAUTH_SCOPE",
  redirectUri: "OAUTH_REDIRECT_URI",
  cache: "OAUTH_LOGIN_CACHE",
  authorizationEndpoint: "OAUTH_AUTHORIZATION_ENDPOINT",
  tokenEndpoint: "OAUTH_TOKEN_ENDPOINT",
  deviceAuthorizationEndpoint: "OAUTH_DEVICE_AUTHORIZATION_ENDPOINT",
  revocationEndpoint: "OAUTH_REVOCATION_ENDPOINT",
  introspectionEndpoint: "OAUTH_INTROSPECTION_ENDPOINT",
  userinfoEndpoint: "OAUTH_USERINFO_ENDPOINT",
  userClaim: "OAUTH_USER_CLAIM",
  provider: "OAUTH_PROVIDER",
  tenant: "OAUTH_TENANT",
  config: "OAUTH_LOGIN_CONFIG",
  profile: "OAUTH_PROFILE",
  clientAuth: "OAUTH_CLIENT_AUTH",
  dpop: "OAUTH_DPOP",
  clientKey: "OAUTH_CLIENT_KEY",
  tokenStorage: "OAUTH_TOKEN_STORAGE",
  grant: "OAUTH_GRANT",
  subjectTokenFrom: "OAUTH_SUBJECT_TOKEN_FROM",
  subjectTokenType: "OAUTH_SUBJECT_TOKEN_TYPE",
  requestedTokenType: "OAUTH_REQUESTED_TOKEN_TYPE",
  subjectAudience: "OAUTH_SUBJECT_AUDIENCE",
  actorTokenFrom: "OAUTH_ACTOR_TOKEN_FROM",
  actorTokenType: "OAUTH_ACTOR_TOKEN_TYPE",
} as const;

/** Everything a command needs to know, resolved from flags, environment and `.env`. */
export interface Config {
  /** The command to run. */
  command: "login" | "token" | "whoami" | "logout" | "doctor" | "profiles" | "fetch" | "exec";
  /** The issuer identifier we expect the metadata to name. */
  issuer: string;
  /** Set when the person gave the full metadata URL instead of the issuer. */
  metadataUrl?: string;
  /** The client identifier (RFC 6749 §2.2); "" for commands that need none (`logout --all`). */
  clientId: string;
  /** The client secret, when the client has one (never printed, never saved). */
  clientSecret?: string;
  /** `undefined` means the default: `openid profile` (+ `offline_access` when offered). */
  scope?: string;
  /** A fixed redirect URI (from `--redirect-uri` or `--port`), else the ephemeral default. */
  redirectUri?: string;
  /** How long the browser flow waits for the person, in ms (`--timeout`). */
  timeoutMs: number;
  /** Whether to open a browser (false with `--no-browser`). */
  browser: boolean;
  /** Whether to print JSON on stdout (`--json`, `--format json`). */
  json: boolean;
  /** Whether to trace requests (secrets redacted) and show causes (`--verbose`). */
  verbose: boolean;
  /** The client authentication method (`--client-auth`); absent: the metadata and the secret decide. */
  clientAuth?: "none" | "client_secret_basic" | "client_secret_post" | "private_key_jwt" | "client_secret_jwt";
  /** `--prompt`, and extra authorization parameters from `--param key=value`. */
  prompt?: string;
  /** Extra authorization parameters (`--param`, the preset's, `resource`, `audience`, `login_hint`). */
  params: [string, string][];
  /** `token`: refresh when the access token expires within this long. */
  minTtlMs: number;
  /** `token`: log in when needed even without a terminal. */
  interactive: boolean;
  /** What `token` prints (`--format`). */
  format: "text" | "json" | "exec-credential" | "headers";
  /** `logout --all`. */
  all: boolean;
  /** How to sign in: the browser with a loopback redirect, the device flow, or the right one for here. */
  flow: "auto" | "browser" | "device";
  /** No progress animation and no "Logged in as" line. */
  quiet: boolean;
  /** Where each setting came from, for `--verbose` and bug reports. Secrets are not kept here. */
  sources: Record<string, "flag" | "environment" | ".env" | "default" | "profile">;
  /**
   * Who decided where credentials go (SECURITY.md 13, see `decideTrust`). "own": the person's own
   * settings (flags, the environment, the profile in use) name some part of the destination, so they
   * decide all of it; ".env": none of them does and the project file does; "none": nothing names a
   * server. `by`: the settings that decided it, as written (`--issuer`, `OAUTH_ISSUER in the
   * environment`); `ignored`: the `.env`'s variables set aside; `withheld`: the person's own
   * credentials not used with a destination the `.env` chose, and where each was set; `kept`: the
   * protections the person's own settings turn on (`PROTECTIONS`) that the `.env` would turn off, and
   * which setting turns each on.
   */
  trust?: {
    decidedBy: "own" | ".env" | "none";
    by: string[];
    ignored: string[];
    withheld: { name: string; from: string }[];
    kept: { name: string; by: string }[];
  };
  /**
   * Endpoints given by hand (RFC 8414 names). Without an issuer, `tokenEndpoint` is required, no
   * discovery happens and `issuer` holds the token endpoint (it keys the cache); with an issuer, each
   * one given overrides the discovered value.
   */
  authorizationEndpoint?: string;
  /** The token endpoint given by hand (RFC 6749 §3.2). */
  tokenEndpoint?: string;
  /** The device authorization endpoint given by hand (RFC 8628 §3.1). */
  deviceAuthorizationEndpoint?: string;
  /** The revocation endpoint given by hand (RFC 7009 §2). */
  revocationEndpoint?: string;
  /** The introspection endpoint given by hand (RFC 7662 §2). */
  introspectionEndpoint?: string;
  /** The UserInfo (or any "who am I") endpoint given by hand (OpenID Connect Core §5.3). */
  userinfoEndpoint?: string;
  /** The member of the UserInfo (or "who am I") answer, or of the ID token, that names the person. */
  userClaim?: string;
  /** The provider preset in force (`--provider`, or inferred from the issuer), see `PRESETS`. */
  provider?: string;
  /** Entra's tenant (`--tenant`): a GUID, a domain name, or `common`, `organizations`, `consumers`. */
  tenant?: string;
  /** Why the preset is in force, for `doctor`: "from flag", "inferred from the issuer host …". */
  providerReason?: string;
  /** The profile in use (`--profile`, `OAUTH_PROFILE`, `default_profile` or `--save-profile`): part of the cache key. */
  profile?: string;
  /** OpenID's `login_hint` (`--login-hint`), also among `params`. */
  loginHint?: string;
  /** Pushed authorization requests (RFC 9126) where the server offers them; `--no-par` turns them off. */
  par: boolean;
  /** DPoP (RFC 9449): sender-constrained tokens, from `--dpop` or `OAUTH_DPOP=1`. */
  dpop?: boolean;
  /** `--client-key`: the path of the private key for `private_key_jwt` (PEM PKCS#8 or a JWK). */
  clientKey?: string;
  /**
   * Where long-lived secrets (refresh tokens, DPoP keys) are kept (`--token-storage`, `OAUTH_TOKEN_STORAGE`,
   * a profile's `token_storage`; never a `.env`'s): sealed under a key in the platform's keychain, which
   * "auto" (the default) uses where one answers and "keychain" requires, or in the token cache file ("file").
   */
  tokenStorage: "auto" | "keychain" | "file";
  /** The `aud` of a client assertion: the issuer (default) or the token endpoint. */
  assertionAudience?: "issuer" | "token-endpoint";
  /** RFC 8707 resource indicators (`--resource`, repeatable) and the vendor `audience` parameter. */
  resources?: string[];
  /** The vendor `audience` parameter (`--audience`: Auth0 and others). */
  audience?: string;
  /**
   * RFC 9728: the API whose protected resource metadata says where to sign in and how to get a
   * client. Set when a command names an API (`fetch URL`, a single `--resource URL`, `doctor URL`) and
   * the settings name no server, or a server but no client id. `url`: the API as given; `resource`:
   * the resource identifier its metadata names, once known (the tokens are for it, RFC 8707);
   * `registration`: the name of this tool's registration of the client (RFC 7591), when it registered
   * one; `setAside`: the person's own settings not used with a server that only the API named.
   */
  protectedResource?: {
    url: string;
    resource?: string;
    registration?: string;
    /** How the client was found: given with `--client-id`, registered before ("remembered"), or just now. */
    client?: "given" | "remembered" | "registered";
    setAside: string[];
  };
  /** RFC 9470: the authentication context classes a sign-in must meet (`--acr-values`); also among `params`. */
  acrValues?: string;
  /** RFC 9470: how long ago, in seconds, the person may have signed in (`--max-age`); also among `params`. */
  maxAge?: number;
  /** `fetch` (and `token --format headers`): the request to make or to prove. */
  request?: {
    /** The HTTP method (`-X`), upper case. */
    method: string;
    /** The URL to call (https, or http on loopback). */
    url?: string;
    /** `-H "Name: value"`, repeatable. */
    headers: [string, string][];
    /** `-d DATA`, `-d @FILE` or `-d @-` (stdin), as given. */
    data?: string;
    /** `--include`: the status line and headers on stderr. */
    include: boolean;
  };
  /**
   * A login without a person (`--grant`): client credentials (RFC 6749 §4.4), a JWT bearer assertion
   * (RFC 7523 §2.1) or token exchange (RFC 8693). Absent: a person signs in (browser or device flow).
   */
  grant?: "client_credentials" | "jwt-bearer" | "token-exchange";
  /**
   * Where the subject token (or the JWT bearer assertion) comes from, read afresh at each grant:
   * `github-actions`, `gitlab:VAR`, `kubernetes[:PATH]`, `file:PATH`, `env:NAME` or `-` (stdin).
   */
  subjectTokenFrom?: string;
  /** The subject token's type (RFC 8693 §3), a URI; default `urn:ietf:params:oauth:token-type:jwt`. */
  subjectTokenType?: string;
  /** The type of token asked of a token exchange (RFC 8693 §2.1), a URI; absent: the server's choice. */
  requestedTokenType?: string;
  /** The audience of a GitHub Actions ID token (default: the issuer). */
  subjectAudience?: string;
  /** Where the actor token of a token exchange comes from (RFC 8693 §2.1), as `subjectTokenFrom`. */
  actorTokenFrom?: string;
  /** The actor token's type (RFC 8693 §3), a URI; default `urn:ietf:params:oauth:token-type:jwt`. */
  actorTokenType?: string;
  /** `exec`: the program to run, its arguments, and the variable that carries the access token. */
  program?: { command: string; args: string[]; envName: string };
}

const FLAGS = {
  issuer: { type: "string" },
  prompt: { type: "string" },
  param: { type: "string", multiple: true },
  "min-ttl": { type: "string" },
  flow: { type: "string" },
  quiet: { type: "boolean", short: "q" },
  interactive: { type: "boolean" },
  format: { type: "string" },
  all: { type: "boolean" },
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
  "authorization-endpoint": { type: "string" },
  "token-endpoint": { type: "string" },
  "device-authorization-endpoint": { type: "string" },
  "revocation-endpoint": { type: "string" },
  "introspection-endpoint": { type: "string" },
  "userinfo-endpoint": { type: "string" },
  "user-claim": { type: "string" },
  provider: { type: "string" },
  tenant: { type: "string" },
  profile: { type: "string" },
  "save-profile": { type: "string" },
  "login-hint": { type: "string" },
  "no-par": { type: "boolean" },
  dpop: { type: "boolean" },
  "client-key": { type: "string" },
  "token-storage": { type: "string" },
  "assertion-audience": { type: "string" },
  resource: { type: "string", multiple: true },
  audience: { type: "string" },
  "acr-values": { type: "string" },
  "max-age": { type: "string" },
  method: { type: "string" },
  url: { type: "string" },
  request: { type: "string", short: "X" },
  header: { type: "string", short: "H", multiple: true },
  data: { type: "string", short: "d" },
  include: { type: "boolean", short: "i" },
  grant: { type: "string" },
  "subject-token-from": { type: "string" },
  "subject-token-type": { type: "string" },
  "requested-token-type": { type: "string" },
  "subject-audience": { type: "string" },
  "actor-token-from": { type: "string" },
  "actor-token-type": { type: "string" },
  "env-name": { type: "string" },
} as const;

type FlagValues = {
  [K in keyof typeof FLAGS]?: typeof FLAGS[K] extends { multiple: true } ? string[]
    : typeof FLAGS[K]["type"] extends "boolean" ? boolean
    : string;
};

type Flag = keyof typeof FLAGS;

/** The endpoints a person may give by hand: the `Config` key, the flag, the RFC 8414 metadata member. */
const MANUAL_ENDPOINTS = [
  ["authorizationEndpoint", "authorization-endpoint", "authorization_endpoint"],
  ["tokenEndpoint", "token-endpoint", "token_endpoint"],
  ["deviceAuthorizationEndpoint", "device-authorization-endpoint", "device_authorization_endpoint"],
  ["revocationEndpoint", "revocation-endpoint", "revocation_endpoint"],
  ["introspectionEndpoint", "introspection-endpoint", "introspection_endpoint"],
  ["userinfoEndpoint", "userinfo-endpoint", "userinfo_endpoint"],
] as const;

type EndpointKey = typeof MANUAL_ENDPOINTS[number][0];

/** How long the login waits for the browser, unless `--timeout` says otherwise. */
const LOGIN_TIMEOUT_MS = 5 * 60_000;

/** The longest a timer can wait (setTimeout's limit, about 24.8 days). */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** The longest `--timeout`, in whole seconds: what fits in a timer. */
const MAX_TIMEOUT_S = Math.floor(MAX_TIMER_MS / 1000);

/** `token` refreshes when the access token expires within this many seconds (`--min-ttl`). */
const MIN_TTL_S = 60;

/** Authorization parameters the tool sets itself; `--param` may not override them. */
const RESERVED_PARAMS = new Set([
  "response_type",
  "client_id",
  "redirect_uri",
  "scope",
  "state",
  "nonce",
  "code_challenge",
  "code_challenge_method",
  "prompt",
]);

/** `resolveConfig`'s lookup of one setting: flag, environment, `.env`, then profile; records the source. */
type ConfigPick = (key: string, flag: string | undefined, variable: string) => string | undefined;

/** The flag of a `Config` key (`tokenEndpoint` → `token-endpoint`). */
const flagOf = (function flagOf(key: string): Flag {
  return key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`) as Flag;
}).bind(undefined);

/** Checks an endpoint given by hand: https, or http on a loopback host; no fragment or credentials. */
function checkManualEndpoint(value: string, flag: string): string {
  const url = parseUrl(value);
  if (!url || (url.protocol !== "https:" && !(url.protocol === "http:" && isLoopbackHost(url.hostname)))) {
    throw new LoginError("config", `The --${flag} "${sanitize(value)}" is not an https URL`, {
      hint: "plain http is only allowed for loopback development servers (127.0.0.1, [::1], localhost)",
    });
  }
  if (url.hash || url.username || url.password) {
    throw new LoginError(
      "config",
      `The --${flag} "${url.origin}${url.pathname}" must not have a fragment or credentials`,
    );
  }
  return url.href;
}

/** The manual endpoints given, else the preset's; throws LoginError("config") when a preset needs an issuer. */
const resolveEndpoints = (function resolveEndpoints(
  flags: FlagValues,
  pick: ConfigPick,
  preset: Preset | undefined,
  provider: string | undefined,
  issuerText: string | undefined,
  options: { presetBase?: string },
): Partial<Record<EndpointKey, string>> {
  const endpoints: Partial<Record<EndpointKey, string>> = {};
  for (const [key, flag] of MANUAL_ENDPOINTS) {
    const given = pick(key, flags[flag], ENV_VARS[key]);
    if (given !== undefined) endpoints[key] = checkManualEndpoint(given, flag);
  }
  // A preset's own hosts serve only a login on them: not GitHub Enterprise's endpoints given with --provider github.
  const home = endpoints.tokenEndpoint ?? endpoints.authorizationEndpoint ?? issuerText;
  const owned = !preset || home === undefined || presetServes(preset, parseIssuer(home).issuer, options.presetBase);
  for (const [key] of MANUAL_ENDPOINTS) {
    const fromPreset = preset?.endpoints?.[key];
    if (endpoints[key] === undefined && fromPreset !== undefined && (fromPreset.startsWith("/") || owned)) {
      endpoints[key] = presetEndpoint(preset, key, issuerText, options.presetBase);
    }
  }
  if (preset && !issuerText && !endpoints.tokenEndpoint && preset.issuerExample) {
    throw new LoginError("config", `The ${provider} preset needs the issuer of your ${provider} account`, {
      hint: `pass --issuer ${shellWord(preset.issuerExample)}`,
    });
  }
  return endpoints;
}).bind(undefined);

/**
 * Throws LoginError("config") when a needed issuer, client id or secret is missing, or a redirect host
 * is refused. `discovering`: an API's metadata will name the server and the client (`resourceMode`).
 */
const checkRequiredSettings = (function checkRequiredSettings(
  { cli, flags, issuerText, endpoints, preset, provider, clientId, clientSecret, redirectUri, trust, discovering }: {
    cli: Cli;
    flags: FlagValues;
    issuerText?: string;
    endpoints: Partial<Record<EndpointKey, string>>;
    preset?: Preset;
    provider?: string;
    clientId: string | undefined;
    clientSecret: string | undefined;
    redirectUri: string | undefined;
    trust: Trust;
    discovering: boolean;
  },
): void {
  const needsClient = !((cli.command === "logout" || cli.command === "whoami") && flags.all) && !discovering;
  if (!issuerText && !endpoints.tokenEndpoint && needsClient) {
    throw new LoginError("config", "No issuer is configured", {
      hint:
        `pass --issuer URL or set ${ENV_VARS.issuer} (in the environment or in .env), or choose a profile with --profile NAME; for a server without discovery, pass --token-endpoint and --authorization-endpoint; or pick a preset with --provider NAME`,
    });
  }
  if (preset?.needsSecret && !clientSecret && (cli.command === "login" || cli.command === "token")) {
    throw new LoginError("config", `The ${provider} preset needs the client secret: ${preset.needsSecret}`, {
      hint: withheldSecretHint(trust) ?? `set ${ENV_VARS.clientSecret} to the secret shown with the client id`,
    });
  }
  const refused = preset?.refusedRedirectHosts ?? [];
  if (redirectUri && refused.includes(parseUrl(redirectUri)?.hostname ?? "")) {
    throw new LoginError(
      "config",
      `The ${provider} preset refuses "${parseUrl(redirectUri)!.hostname}" in a redirect URI`,
      {
        hint: "register and use http://127.0.0.1:PORT/callback instead",
      },
    );
  }
  if (!clientId && needsClient) {
    throw new LoginError("config", "No client id is configured", {
      hint: `pass --client-id ID or set ${ENV_VARS.clientId} (in the environment or in .env)`,
    });
  }
}).bind(undefined);

/** The redirect URI with --port applied, validated; throws LoginError for a bad port or a bad redirect URI. */
const resolveRedirectUri = (function resolveRedirectUri(
  flags: FlagValues,
  redirectUri: string | undefined,
  sources: Record<string, ValueSource>,
): string | undefined {
  if (flags.port !== undefined) {
    const port = Number(flags.port);
    if (!/^\d+$/.test(flags.port) || port < 1 || port > 65535) {
      throw new LoginError("usage", `The port "${sanitize(flags.port)}" is not a number from 1 to 65535`);
    }
    planRedirect(redirectUri); // a bad redirect is a configuration error, before --port changes it
    const base = new URL(redirectUri ?? `http://127.0.0.1${CALLBACK_PATH}`);
    // Written out, not `base.href`: `URL` drops an explicit `:80`, which would then mean "any port".
    redirectUri = `http://${base.hostname}:${port}${base.pathname}`;
    sources.redirectUri = sources.port ?? "flag";
  }
  planRedirect(redirectUri); // validate early: a bad redirect is a configuration error
  return redirectUri;
}).bind(undefined);

/** --timeout in milliseconds (default LOGIN_TIMEOUT_MS); throws LoginError("usage") unless 0 < s <= MAX_TIMEOUT_S. */
const resolveTimeoutMs = (function resolveTimeoutMs(flags: FlagValues, sources: Record<string, ValueSource>): number {
  let timeoutMs = LOGIN_TIMEOUT_MS;
  if (flags.timeout !== undefined) {
    // More than 0 and at most MAX_TIMEOUT_S seconds, fractions allowed; the message states exactly that.
    const timeout = Number(flags.timeout);
    if (!/^\d+(\.\d+)?$/.test(flags.timeout) || !(timeout > 0) || timeout > MAX_TIMEOUT_S) {
      throw new LoginError(
        "usage",
        `The timeout "${sanitize(flags.timeout)}" is not a number of seconds above 0 and at most ${MAX_TIMEOUT_S}`,
        { hint: "give the seconds to wait for the browser, e.g. --timeout 600" },
      );
    }
    timeoutMs = Math.max(1, Math.round(timeout * 1000));
    sources.timeout ??= "flag";
  }
  return timeoutMs;
}).bind(undefined);

/** The client authentication method asked for, if any; throws LoginError for an unknown one or a missing secret. */
const resolveClientAuth = (function resolveClientAuth(
  flags: FlagValues,
  pick: ConfigPick,
  sources: Record<string, ValueSource>,
  clientSecret: string | undefined,
  trust: Trust,
): string | undefined {
  const clientAuth = pick("clientAuth", flags["client-auth"], ENV_VARS.clientAuth);
  if (clientAuth !== undefined && !(CLIENT_AUTH_METHODS as readonly string[]).includes(clientAuth)) {
    const methods = CLIENT_AUTH_METHODS.join(", ");
    throw new LoginError("usage", `The client authentication "${sanitize(clientAuth)}" is not supported`, {
      hint: sources.clientAuth === "flag" ? `use one of ${methods}` : `set ${ENV_VARS.clientAuth} to one of ${methods}`,
    });
  }
  if (clientAuth && clientAuth !== "none" && clientAuth !== "private_key_jwt" && !clientSecret) {
    throw new LoginError("config", `The client authentication "${clientAuth}" needs a client secret`, {
      hint: withheldSecretHint(trust) ?? `set ${ENV_VARS.clientSecret} (in the environment or in .env)`,
    });
  }
  return clientAuth;
}).bind(undefined);

/** --min-ttl in milliseconds (default MIN_TTL_S seconds); throws LoginError("usage") unless seconds >= 0. */
const resolveMinTtlMs = (function resolveMinTtlMs(flags: FlagValues): number {
  let minTtlMs = MIN_TTL_S * 1000;
  if (flags["min-ttl"] !== undefined) {
    minTtlMs = Number(flags["min-ttl"]) * 1000;
    if (!/^\d+(\.\d+)?$/.test(flags["min-ttl"])) {
      throw new LoginError(
        "usage",
        `The minimum lifetime "${sanitize(flags["min-ttl"])}" is not a number of seconds, 0 or more`,
        {
          hint: "give the seconds before expiry at which to refresh, e.g. --min-ttl 300 (at most half the " +
            "token's lifetime is used; 0: only when expired)",
        },
      );
    }
  }
  return minTtlMs;
}).bind(undefined);

/** --format (or --json) and --flow; throws LoginError("usage") for a value not supported. */
const resolveFormatAndFlow = (function resolveFormatAndFlow(flags: FlagValues): { format: OutputFormat; flow: Flow } {
  const format = flags.format ?? (flags.json ? "json" : "text");
  if (format !== "text" && format !== "json" && format !== "exec-credential" && format !== "headers") {
    throw new LoginError("usage", `The format "${sanitize(format)}" is not supported`, {
      hint: "use text, json, exec-credential or headers",
    });
  }
  const flow = flags.flow ?? "auto";
  if (flow !== "auto" && flow !== "browser" && flow !== "device") {
    throw new LoginError("usage", `The flow "${sanitize(flow)}" is not one of auto, browser or device`);
  }
  return { format, flow };
}).bind(undefined);

/** --token-storage (else the environment's or a profile's, never a `.env`'s; default auto); throws LoginError("usage"). */
const resolveTokenStorage = (function resolveTokenStorage(
  flags: FlagValues,
  pick: ConfigPick,
  sources: Record<string, ValueSource>,
): TokenStorage {
  const storage = pick("tokenStorage", flags["token-storage"], ENV_VARS.tokenStorage) ?? "auto";
  if (storage !== "auto" && storage !== "keychain" && storage !== "file") {
    const where = sources.tokenStorage === "flag"
      ? "--token-storage"
      : sources.tokenStorage === "profile"
      ? "token_storage in the profile"
      : ENV_VARS.tokenStorage;
    throw new LoginError("usage", `The token storage "${sanitize(storage)}" is not auto, keychain or file`, {
      hint: `set ${where} to auto (the keychain where one answers, else the file), keychain or file`,
    });
  }
  return storage;
}).bind(undefined);

/**
 * --param key=value pairs, then the preset's parameters not given, then `login_hint` from --login-hint
 * unless a --param gave it; throws LoginError("usage") for a bad one.
 */
const resolveParams = (function resolveParams(flags: FlagValues, preset: Preset | undefined): [string, string][] {
  const params: [string, string][] = [];
  for (const param of flags.param ?? []) {
    const [key, ...value] = param.split("=");
    if (!key || value.length === 0) {
      throw new LoginError("usage", `The parameter "${sanitize(param)}" is not of the form key=value`);
    }
    if (RESERVED_PARAMS.has(key)) {
      throw new LoginError("usage", `The parameter "${sanitize(key)}" is set by the tool and cannot be overridden`, {
        hint: key === "scope" ? "use --scope" : key === "prompt" ? "use --prompt" : undefined,
      });
    }
    params.push([key, value.join("=")]);
  }
  for (const [key, value] of preset?.params ?? []) {
    if (!params.some(([given]) => given === key)) params.push([key, value]);
  }
  const loginHint = flags["login-hint"];
  if (loginHint && !params.some(([key]) => key === "login_hint")) params.push(["login_hint", loginHint]);
  return params;
}).bind(undefined);

/** Flags win over the environment, the environment over `.env`, `.env` over the profile. Pure. */
const resolveConfig: (
  cli: Cli,
  env: (name: string) => string | undefined,
  dotenv?: Record<string, string>,
  profile?: Profile,
  options?: { presetBase?: string; envFile?: string },
) => Config = (function resolveConfig(
  cli: Cli,
  env: (name: string) => string | undefined,
  dotenv: Record<string, string> = {},
  profile?: Profile,
  options: { presetBase?: string; envFile?: string } = {},
): Config {
  const sources: Record<string, ValueSource> = {};
  const trusted = trustedSources(cli, env, dotenv, profile, sources);
  const { trust, flags } = trusted;
  let pick = trusted.pick;
  let issuerText = pick("issuer", flags.issuer, ENV_VARS.issuer);
  let clientId = pick("clientId", flags["client-id"], ENV_VARS.clientId);
  let clientSecret = pick("clientSecret", flags["client-secret"], ENV_VARS.clientSecret);
  let scope = pick("scope", flags.scope, ENV_VARS.scope);
  let redirectUri = pick("redirectUri", flags["redirect-uri"], ENV_VARS.redirectUri);
  const grant = pick("grant", flags.grant, ENV_VARS.grant);
  const chosen = resolvePreset(flags, pick, sources, issuerText, options);
  issuerText = chosen.issuerText;
  const { provider, providerReason, preset, tenant } = chosen;
  const endpoints = resolveEndpoints(flags, pick, preset, provider, issuerText, options);
  if (trust.decidedBy === ".env") checkProjectEndpoints(issuerText, endpoints, sources, { ...chosen, ...options });
  // An API named with no server, or no client id, to sign in for: its metadata names both (RFC 9728).
  const api = resourceMode(cli, flags, { issuerText, clientId, provider, endpoints, grant });
  const own = api
    ? ownClientSettings({ clientId, clientSecret, scope, pick }, sources, { profile, ...options })
    : undefined;
  if (own) ({ clientId, clientSecret, scope, pick } = own);
  const required = { cli, flags, endpoints, ...chosen, clientId, clientSecret, redirectUri, trust };
  checkRequiredSettings({ ...required, discovering: !!api });
  scope ??= preset?.scope;
  redirectUri = resolveRedirectUri(flags, redirectUri, sources);
  const timeoutMs = resolveTimeoutMs(flags, sources);
  const clientAuth = resolveClientAuth(flags, pick, sources, clientSecret, trust);
  const minTtlMs = resolveMinTtlMs(flags);
  const { format, flow } = resolveFormatAndFlow(flags);
  const params = resolveParams(flags, preset);
  // Without an issuer nothing is discovered: the token endpoint stands for the server (and keys the cache).
  const where = issuerText ? parseIssuer(issuerText) : { issuer: endpoints.tokenEndpoint ?? "" };
  const modern = resolveModernConfig({ ...cli, flags }, pick, clientAuth as ClientAuthMethod | undefined, format);
  // --resource and --audience are authorization parameters like --param's, and so part of the cache key.
  for (const resource of modern.resources ?? []) params.push(["resource", resource]);
  if (modern.audience) params.push(["audience", modern.audience]);
  return checkGrantClient({
    command: cli.command,
    ...where,
    clientId: clientId ?? "",
    clientSecret: clientAuth === "none" ? undefined : clientSecret,
    scope,
    redirectUri,
    timeoutMs,
    browser: !flags["no-browser"],
    json: format === "json",
    verbose: flags.verbose ?? false,
    clientAuth: (clientAuth ?? (clientSecret ? preset?.clientAuth : undefined)) as ClientAuthMethod | undefined,
    prompt: flags.prompt ?? preset?.prompt,
    params: withStepUpParams(params, modern),
    minTtlMs,
    interactive: flags.interactive ?? false,
    format,
    all: flags.all ?? false,
    flow,
    quiet: flags.quiet ?? false,
    sources,
    trust,
    ...endpoints,
    userClaim: pick("userClaim", flags["user-claim"], ENV_VARS.userClaim) ?? preset?.userClaim,
    provider,
    tenant,
    providerReason,
    ...(profile ? { profile: profile.name } : {}),
    ...(flags["login-hint"] ? { loginHint: flags["login-hint"] } : {}),
    par: !flags["no-par"],
    tokenStorage: resolveTokenStorage(flags, pick, sources),
    ...modern,
    ...(api ? { protectedResource: { url: api, setAside: own?.aside ?? [] } } : {}),
    ...resolveGrantConfig(cli, pick, trust),
  }, trust);
}).bind(undefined);

/**
 * The settings of issue 15 (DPoP, JWT client authentication, resources, `fetch`) and `exec`'s program,
 * checked and resolved; `pick` is `resolveConfig`'s flag → environment → `.env` lookup. Pure.
 */
const resolveModernConfig = (function resolveModernConfig(
  cli: Cli,
  pick: (key: string, flag: string | undefined, variable: string) => string | undefined,
  clientAuth: ClientAuthMethod | undefined,
  format: string,
): Partial<Config> {
  const { flags } = cli;
  const dpopText = pick("dpop", flags.dpop ? "1" : undefined, ENV_VARS.dpop);
  if (dpopText !== undefined && !/^(1|0|true|false|yes|no)$/i.test(dpopText)) {
    throw new LoginError("config", `${ENV_VARS.dpop} is "${sanitize(dpopText)}", not 1 or 0`);
  }
  const dpop = dpopText !== undefined && /^(1|true|yes)$/i.test(dpopText);
  const clientKey = pick("clientKey", flags["client-key"], ENV_VARS.clientKey);
  if (clientAuth === "private_key_jwt" && !clientKey) {
    throw new LoginError("config", 'The client authentication "private_key_jwt" needs a private key', {
      hint: `pass --client-key FILE or set ${ENV_VARS.clientKey} (a PEM PKCS#8 key or a JWK)`,
    });
  }
  if (clientKey && clientAuth && clientAuth !== "private_key_jwt") {
    throw new LoginError("usage", `A client key is only used with private_key_jwt, not "${clientAuth}"`, {
      hint: "drop --client-key, or use --client-auth private_key_jwt",
    });
  }
  const audienceFlag = flags["assertion-audience"];
  if (audienceFlag !== undefined && audienceFlag !== "issuer" && audienceFlag !== "token-endpoint") {
    throw new LoginError("usage", `The assertion audience "${sanitize(audienceFlag)}" is not issuer or token-endpoint`);
  }
  const resources = [...new Set(flags.resource ?? [])];
  for (const resource of resources) {
    const url = parseUrl(resource);
    if (!url || url.hash || resource.includes("#")) {
      throw new LoginError("usage", `The resource "${sanitize(resource)}" is not an absolute URI without a fragment`, {
        hint: "a resource indicator (RFC 8707) names an API, e.g. https://api.example.com/",
      });
    }
  }
  const request = cli.command === "fetch" || format === "headers" ? resourceRequest(cli, resources) : undefined;
  return {
    ...stepUpSettings(flags),
    dpop,
    clientKey,
    // A client key implies private_key_jwt; otherwise leave clientAuth as resolveConfig set it (a preset's).
    ...(!clientAuth && clientKey ? { clientAuth: "private_key_jwt" as const } : {}),
    assertionAudience: audienceFlag as Config["assertionAudience"],
    resources,
    audience: flags.audience,
    request,
    ...(cli.command === "exec" ? { program: resolveProgram(cli) } : {}),
  };
}).bind(undefined);

/**
 * The request `fetch` makes, or `token --format headers` proves: the URL (positional or `--url`),
 * checked by `tokenRefusal` before any sign-in, `-H` headers, the method. Throws a `usage` LoginError. Pure.
 */
function resourceRequest(cli: Cli, resources: string[]): ResourceRequest {
  const { flags } = cli;
  const target = cli.target ?? flags.url;
  if (target === undefined) {
    throw new LoginError("usage", cli.command === "fetch" ? "No URL to fetch" : "The headers format needs --url", {
      hint: cli.command === "fetch"
        ? 'run "oauth-login fetch https://api.example.com/me"'
        : "pass the request the proof is for: --method GET --url https://api.example.com/me",
    });
  }
  const url = parseUrl(target);
  if (!url) {
    throw new LoginError("usage", `The URL "${sanitize(target)}" is not an https URL`, {
      hint: "give the whole address, e.g. https://api.example.com/me",
    });
  }
  if (url.username || url.password) {
    // They would replace the token (fetch sends Basic credentials where a URL carries them), or go with it.
    throw new LoginError("usage", `The URL "${sanitize(url.origin + url.pathname)}" must not carry credentials`, {
      hint: `${
        cli.command === "fetch" ? "fetch sends" : "the headers carry"
      } the cached access token: take USER:PASSWORD@ out of the URL`,
    });
  }
  // Before any sign-in: the rule `fetch` and `--format headers` apply again to the token they get.
  const refusal = tokenRefusal(url, { resources });
  if (refusal) throw refusal;
  const headers: [string, string][] = [];
  for (const header of flags.header ?? []) {
    const match = header.match(/^([!#$%&'*+.^_`|~0-9A-Za-z-]+):\s*(.*)$/);
    if (!match) {
      throw new LoginError("usage", `The header "${sanitize(header)}" is not of the form "Name: value"`);
    }
    if (/^(authorization|dpop)$/i.test(match[1])) {
      throw new LoginError("usage", `The header "${match[1]}" is set by oauth-login itself`, {
        hint: "drop that -H; the cached token (and its DPoP proof) is sent for you",
      });
    }
    headers.push([match[1], match[2]]);
  }
  const method = (flags.request ?? flags.method ?? (flags.data !== undefined ? "POST" : "GET")).toUpperCase();
  if (!/^[A-Z]+$/.test(method)) throw new LoginError("usage", `The method "${sanitize(method)}" is not valid`);
  return { method, url: url.href, headers, data: flags.data, include: flags.include ?? false };
}

// ── 4 Trust: who may decide where credentials go, and what is read and sent ────────────────────────────────────────

/**
 * Where credentials go (SECURITY.md 13): the server (its issuer or metadata URL, or a provider preset
 * and its tenant) and every endpoint given by hand. One kind of source decides all of them.
 */
const DESTINATION_KEYS = ["issuer", "provider", "tenant", ...MANUAL_ENDPOINTS.map(([key]) => key)] as const;

/**
 * The client's credentials, how they are presented, and the grant they are used for (a `.env`'s
 * `OAUTH_GRANT=client_credentials` would otherwise turn the person's own client and secret into a
 * service token with the project's scope): they go only with the destination they came with.
 */
const CREDENTIAL_KEYS = [
  "clientSecret",
  "clientKey",
  "clientAuth",
  "assertionAudience",
  "grant",
  "subjectTokenType",
  "requestedTokenType",
  "actorTokenType",
] as const;

/**
 * What a grant without a person reads and sends (its subject and actor token sources: the person's
 * files, variables or CI identity), and whom a CI identity token is minted for. Never from a project
 * file (`.env`); the environment's and the profile's only with a destination of the person's own.
 */
const SOURCE_KEYS = ["subjectTokenFrom", "actorTokenFrom", "subjectAudience"] as const;

/**
 * The switches that protect the person when on (RFC 9449's DPoP binds tokens to a key): a project
 * file may turn one on, never off when the person's own settings turn it on. The other settings a
 * `.env` could weaken are kept from it already: where credentials go and how the client
 * authenticates go with one source as a whole (`decideTrust`); `--no-par` and the cache and config
 * folders are not read from a `.env` at all.
 */
const PROTECTIONS = [{ key: "dpop", what: "DPoP" }] as const;

/** Who decided where credentials go, and what was set aside for it (see `Config.trust`). */
type Trust = NonNullable<Config["trust"]>;

/**
 * Which sources may give where credentials go, and the credentials (SECURITY.md 13). When any of
 * the person's own settings (a flag on `flags`, the command line's own; the environment; the profile
 * in use) names any part of the destination, those decide all of it and the `.env`'s destination and
 * credentials are set aside; only when none does may the `.env` decide it, all of it. Credentials go
 * with the destination: the environment's and the profile's never to one the `.env` chose, a flag's
 * always (it was typed for this run). The subject and actor token sources (`SOURCE_KEYS`) go the same
 * way, and never come from the `.env` at all (`dotenvWarnings` says so). A `.env` value equal to the
 * one used is not reported. Pure.
 */
const decideTrust = (function decideTrust(
  flags: FlagValues,
  env: (name: string) => string | undefined,
  dotenv: Record<string, string>,
  profile: Profile | undefined,
): Trust {
  const given = (value: unknown): value is string => typeof value === "string" && value !== "";
  const variable = (key: string) => (ENV_VARS as Record<string, string>)[key] ?? "";
  // The person's own value of a setting, and where it is set: [value, name, where] or undefined.
  const own = (key: string) =>
    ([
      [flags[flagOf(key)], `--${flagOf(key)}`, ""],
      [variable(key) ? env(variable(key)) : undefined, variable(key), "the environment"],
      [profileValue(profile, key), profileKey(flagOf(key)), `the profile "${profile?.name}"`],
    ] as const).find(([value]) => given(value)) as [string, string, string] | undefined;
  const by = DESTINATION_KEYS.map(own).flatMap((found) =>
    found ? [found[2] ? `${found[1]} in ${found[2]}` : found[1]] : []
  );
  const inDotenv = (keys: readonly string[]) => keys.filter((key) => given(dotenv[variable(key)]));
  // A protection the person's own settings turn on is not turned off by the .env, whoever decides the destination.
  const kept = PROTECTIONS.flatMap(({ key }) => {
    const found = own(key);
    const on = (value: string | undefined) => value !== undefined && /^(1|true|yes)$/i.test(value);
    if (!found || !on(found[0]) || !given(dotenv[variable(key)]) || on(dotenv[variable(key)])) return [];
    return [{ name: variable(key), by: found[2] ? `${found[1]} in ${found[2]}` : found[1] }];
  });
  if (by.length > 0) {
    const ignored = inDotenv([...DESTINATION_KEYS, ...CREDENTIAL_KEYS]).filter((key) =>
      !sameSetting(own(key)?.[0], dotenv[variable(key)])
    );
    return { decidedBy: "own", by, ignored: ignored.map(variable), withheld: [], kept };
  }
  const chosen = inDotenv(DESTINATION_KEYS);
  if (chosen.length === 0) return { decidedBy: "none", by, ignored: [], withheld: [], kept };
  // Credentials the person typed as flags for this run are used; their others are not sent to the .env's server.
  const withheld = [...CREDENTIAL_KEYS, ...SOURCE_KEYS].map(own).flatMap((found) =>
    found && found[2] ? [{ name: found[1], from: found[2] }] : []
  );
  return { decidedBy: ".env", by: chosen.map(variable), ignored: [], withheld, kept };
}).bind(undefined);

/** Whether two values of a setting say the same: equal, or the same URL (`https://a` and `https://a/`). */
function sameSetting(a: string | undefined, b: string | undefined): boolean {
  if (a === undefined || b === undefined) return false;
  return a === b || (parseUrl(a)?.href ?? a) === (parseUrl(b)?.href ?? b);
}

/**
 * `resolveConfig`'s sources: who decides where credentials go, the flags with the profile's beneath
 * them (less its credential settings when a `.env` decides), and the lookup of every other setting.
 */
const trustedSources = (function trustedSources(
  cli: Cli,
  env: (name: string) => string | undefined,
  dotenv: Record<string, string>,
  profile: Profile | undefined,
  sources: Record<string, ValueSource>,
): { trust: Trust; flags: FlagValues; pick: ConfigPick } {
  env = remembered(env); // decideTrust and pick read the same variables: each is read once
  const trust = decideTrust(cli.flags, env, dotenv, profile);
  let flags = withProfile(cli.flags, profile, sources);
  if (trust.decidedBy === ".env" && sources.assertionAudience === "profile") {
    flags = { ...flags, "assertion-audience": undefined }; // a credential setting: it goes with the profile's destination
    delete sources.assertionAudience;
  }
  return { trust, flags, pick: configPicker(env, dotenv, profile, sources, trust) };
}).bind(undefined);

/**
 * Settings no project file may give: where the user's own secrets are kept (a cloned repository's `.env`
 * could otherwise move them out of the keychain). Each is read from a flag, the environment or a profile.
 */
const PERSONAL_KEYS = ["tokenStorage"] as const;

/** Whether `source` may give the setting `key` under `trust` (see `decideTrust`). Pure. */
const mayGive = (function mayGive(trust: Trust, key: string, source: ValueSource): boolean {
  if ((PERSONAL_KEYS as readonly string[]).includes(key)) return source !== ".env";
  if (source === ".env" && trust.kept.some(({ name }) => name === (ENV_VARS as Record<string, string>)[key])) {
    return false; // it would turn off a protection the person turned on
  }
  if ((DESTINATION_KEYS as readonly string[]).includes(key)) return !(source === ".env" && trust.decidedBy === "own");
  if ((SOURCE_KEYS as readonly string[]).includes(key)) {
    return source === "flag" || (source !== ".env" && trust.decidedBy !== ".env");
  }
  if (!(CREDENTIAL_KEYS as readonly string[]).includes(key) || source === "flag") return true;
  return trust.decidedBy === ".env" ? source === ".env" : source !== ".env";
}).bind(undefined);

/** A ConfigPick over these sources, as `trust` allows, writing the winning source of each key into `sources`. Pure. */
const configPicker = (function configPicker(
  env: (name: string) => string | undefined,
  dotenv: Record<string, string>,
  profile: Profile | undefined,
  sources: Record<string, ValueSource>,
  trust: Trust,
): ConfigPick {
  return (key: string, flag: string | undefined, variable: string): string | undefined => {
    const candidates: [string | undefined, ValueSource][] = [
      [flag, "flag"],
      [env(variable), "environment"],
      [dotenv[variable], ".env"],
      [profileValue(profile, key), "profile"],
    ];
    for (const [value, source] of candidates) {
      if (value !== undefined && value !== "" && mayGive(trust, key, source)) {
        sources[key] = source;
        return value;
      }
    }
    return undefined;
  };
}).bind(undefined);

/**
 * Where a login that a project file points may send what the person's sign-in yields (SECURITY.md
 * 13): the origin where the person signs in (`home`), and, when that is one of the preset's own hosts
 * (`Preset.hosts`), all of them: Google signs in on accounts.google.com and takes the code on
 * oauth2.googleapis.com. Origins (RFC 6454), as `rebase` puts a preset at a test's mock. Pure.
 */
function projectOrigins(home: URL, preset: Preset | undefined, presetBase?: string): string[] {
  const own = presetOrigins(preset, presetBase);
  return own.includes(home.origin) ? [...new Set([home.origin, ...own])] : [home.origin];
}

/** A URL's origin, or undefined for text that is no URL. */
function originOf(text: unknown): string | undefined {
  return typeof text === "string" ? parseUrl(text)?.origin : undefined;
}

/**
 * A login a `.env` points (it decides the destination) keeps every endpoint that receives a code, a
 * device code, a credential or a token (token, device authorization, revocation, introspection,
 * UserInfo, a preset's own revocation API), whether the `.env` gives it or a preset does, on the origin
 * where the person signs in: the authorization endpoint's, else the issuer's, else the token endpoint's
 * (`projectOrigins`). Otherwise the browser could sign in at a real provider while the code and the
 * verifier, or the tokens, go to another server; and a `.env` cannot mix a preset's endpoints with
 * its own issuer or endpoints on another host. `discover` checks the discovered ones the same way
 * (`checkProjectMetadata`). Throws LoginError("config").
 */
function checkProjectEndpoints(
  issuerText: string | undefined,
  endpoints: Partial<Record<EndpointKey, string>>,
  sources: Record<string, ValueSource>,
  options: { preset?: Preset; provider?: string; presetBase?: string; envFile?: string },
): void {
  const envFile = options.envFile ?? '".env"';
  // Each URL in effect, by what it is and who gave it: the .env, or the preset.
  const named = (key: string, words: string) =>
    sources[key] === ".env" ? `the ${words} in ${envFile}` : `the ${options.provider} preset's ${words}`;
  const issuer = issuerText ? parseIssuer(issuerText).issuer : undefined;
  // The preset's own absolute endpoints too, where the .env's left them out (`presetServes`): a .env naming a
  // preset and endpoints of its own elsewhere is refused, not quietly made a login without the preset's.
  const ownOrPreset = (key: EndpointKey) =>
    endpoints[key] ?? presetEndpoint(options.preset, key, issuerText, options.presetBase);
  const urls: [string, string, string][] = MANUAL_ENDPOINTS.flatMap(([key, flag]) =>
    ownOrPreset(key) ? [[key, named(key, flag.replaceAll("-", " ")), ownOrPreset(key)!]] : []
  );
  for (const extra of [options.preset?.tokenDeletionEndpoint, options.preset?.bearerRevocationEndpoint]) {
    if (extra) urls.push(["", named("", "revocation API"), rebase(extra, options.presetBase)]);
  }
  if (issuer) urls.push(["issuer", named("issuer", "issuer"), issuer]);
  const [, where, text] =
    ["authorizationEndpoint", "issuer", "tokenEndpoint"].map((key) => urls.find(([given]) => given === key)).find((
      found,
    ) => found) ?? [];
  const home = parseUrl(text ?? "");
  if (!home || !where) return;
  const allowed = projectOrigins(home, options.preset, options.presetBase);
  for (const [, words, url] of urls) {
    const origin = originOf(url);
    if (origin === undefined || allowed.includes(origin)) continue;
    // Both the .env's: "than its issuer"; one the preset's: each named in full.
    const mixed = words.includes(" preset's ") !== where.includes(" preset's ");
    const than = mixed ? where : where.replace(/ in .*$/, "").replace(/^the (?=[a-z ]+$)/, "its ");
    throw new LoginError(
      "config",
      `${words[0].toUpperCase()}${words.slice(1)} is on another host (${
        new URL(url).host
      }) than ${than} (${home.host})`,
      {
        hint: mixed
          ? "a project file cannot mix a provider preset's endpoints with an issuer or endpoints of its own on " +
            "another host; if you trust them, pass them as flags"
          : "a project file's endpoints must all be on the host where you sign in; if you trust them, pass them as flags",
      },
    );
  }
}

// ── 5 The .env file: where it is, what it says, and what parseEnv would misread ────────────────────────────────────

/**
 * The `.env` to read: `--env-file` (relative to where the person stands), else `.env` there. Under
 * `deno task` the working directory is the one holding deno.json, and `INIT_CWD` is where the task
 * was started; outside a task it is unset and the working directory is where the person stands.
 */
const envFilePath: (flag: string | undefined, initCwd: string | undefined, cwd?: string) => string =
  (function envFilePath(flag: string | undefined, initCwd: string | undefined, cwd?: string): string {
    const path = flag ?? ".env";
    if (!initCwd || /^(?:[a-zA-Z]:)?[\\/]/.test(path)) return path;
    const start = initCwd.replace(/[\\/]+$/, "");
    // `deno task` runs in the directory of deno.json, which is where it started or above it. A working
    // directory elsewhere means INIT_CWD was inherited from an outer task by a process started
    // somewhere else: then the working directory is where the person (or script) stands.
    if (cwd !== undefined) {
      const here = cwd.replace(/[\\/]+$/, "");
      if (here !== start && !start.startsWith(`${here}/`) && !start.startsWith(`${here}\\`) && here !== "") return path;
    }
    return `${start}/${path}`;
  }).bind(undefined);

/** The path as `--verbose` and `doctor` show it. */
function describeEnvPath(path: string, cwd?: () => string): string {
  if (/^(?:[a-zA-Z]:)?[\\/]/.test(path)) return `"${sanitize(path)}"`;
  let here: string | undefined;
  try {
    here = cwd?.();
  } catch { /* no read permission: say it in words */ }
  return here ? `"${sanitize(`${here}/${path}`)}"` : `"${sanitize(path)}" in the working directory`;
}

/** The folder the `.env` at `path` is in, absolute when the working directory is known ("." when not and it is relative). */
function envFolder(path: string, cwd?: () => string): string {
  const cut = Math.max(path.lastIndexOf("/"), path.lastIndexOf("\\"));
  const folder = cut < 0 ? "" : cut === 0 ? path.slice(0, 1) : path.slice(0, cut);
  if (/^(?:[a-zA-Z]:)?[\\/]/.test(folder)) return folder;
  let here: string | undefined;
  try {
    here = cwd?.();
  } catch { /* no read permission: relative to it */ }
  const base = here?.replace(/[\\/]+$/, "");
  return base ? (folder ? `${base}/${folder}` : base) : folder || ".";
}

/**
 * The client key a `.env` names (SECURITY.md 13), as a path in the `.env`'s own folder `dir`, where a
 * project keeps a key of its own: never through `..` nor an absolute path elsewhere (and, at its use,
 * never a link leading out: `checkProjectKey`), else a project file could make the tool sign for its
 * server with one of the person's own keys. Throws LoginError("config"). Pure.
 */
function projectKeyPath(value: string, dir: string, envFile: string): string {
  const absolute = /^(?:[a-zA-Z]:)?[\\/]/.test(value);
  const root = dir.replace(/[\\/]+$/, "");
  const inside = absolute ? value.startsWith(`${root}/`) || value.startsWith(`${root}\\`) : true;
  if (!inside || value.split(/[\\/]/).includes("..")) {
    throw new LoginError(
      "config",
      `The client key "${sanitize(value)}" in ${envFile} is outside the project's folder (${sanitize(root)})`,
      {
        hint:
          `a project file may only name a key in its own folder; for a key of yours, pass --client-key or set ${ENV_VARS.clientKey} in the environment`,
      },
    );
  }
  return absolute ? value : `${root}/${value.replace(/^\.[\\/]/, "")}`;
}

/**
 * The edge of `projectKeyPath`: the key file's real path (links followed) is in the real `.env`
 * folder `dir`, or the key is refused (a missing one is `readClientKey`'s to report). Throws
 * LoginError("config").
 */
function checkProjectKey(path: string, dir: string, envFile: string): void {
  let real: string, root: string;
  try {
    [real, root] = [Deno.realPathSync(path), Deno.realPathSync(dir)];
  } catch (error) {
    if (error instanceof Deno.errors.NotCapable) throw error;
    return;
  }
  if (real.startsWith(`${root.replace(/[\\/]+$/, "")}/`) || real.startsWith(`${root.replace(/[\\/]+$/, "")}\\`)) {
    return;
  }
  throw new LoginError(
    "config",
    `The client key "${sanitize(path)}" in ${envFile} is a link to a file outside the project's folder`,
    {
      hint:
        `a project file may only name a key in its own folder; for a key of yours, pass --client-key or set ${ENV_VARS.clientKey} in the environment`,
    },
  );
}

/**
 * The configuration with the client key a `.env` names made a path in the `.env`'s own folder
 * (`projectKeyPath`) and checked there (`checkProjectKey`); as it was for a key from anywhere else (the
 * cached-token path asks for no working directory). Throws LoginError("config").
 */
const withProjectKey =
  (function withProjectKey(config: Config, envPath: string, deps: Pick<Deps, "cwd">, envFile: string): Config {
    if (!config.clientKey || config.sources.clientKey !== ".env") return config;
    const dir = envFolder(envPath, deps.cwd);
    const clientKey = projectKeyPath(config.clientKey, dir, envFile);
    checkProjectKey(clientKey, dir, envFile);
    return { ...config, clientKey };
  }).bind(undefined);

/**
 * Parses dotenv text with `parse` (node:util's `parseEnv`) after undoing what editors add: a UTF-8
 * byte order mark (Windows Notepad) and CR line ends (CRLF from Windows, a lone CR from old macOS).
 */
function parseDotenv(text: string, parse: (text: string) => object): Record<string, string> {
  const clean = text.replace(/^\uFEFF/, "").replace(/\r\n?/g, "\n");
  return { ...parse(clean) } as Record<string, string>;
}

/**
 * Warnings for `.env` keys that look like one of ours but are not (`OAUTH_CLIENTID`, `oauth_issuer`,
 * `OAUTH-SCOPE`, `OAUTH_ISUER`): each names the variable meant. Pure.
 */
function misspeltKeys(dotenv: Record<string, string>): string[] {
  const ours = Object.values(ENV_VARS) as string[];
  const squash = (key: string) => key.toUpperCase().replace(/[^A-Z0-9]/g, "");
  const warnings: string[] = [];
  for (const key of Object.keys(dotenv)) {
    if (ours.includes(key)) continue;
    const meant = ours.find((name) => squash(name) === squash(key)) ??
      (squash(key).startsWith("OAUTH") ? ours.find((name) => editDistance(squash(name), squash(key)) <= 1) : undefined);
    if (meant) warnings.push(`The .env key "${sanitize(key, 60)}" is not one this tool reads; did you mean ${meant}?`);
  }
  return warnings;
}

/**
 * Lines of dotenv text that `parseEnv` reads as something other than what they say, each as a warning
 * naming its line (never the value, which may be a secret): `KEY: value`, which it skips, and an
 * unquoted value with a `#` right after a character, where it cuts the value (`KEY=abc#123` is "abc"). Pure.
 */
function dotenvLineProblems(text: string): string[] {
  const problems: string[] = [];
  text.replace(/^\uFEFF/, "").split(/\r\n?|\n/).forEach((line, index) => {
    const key = line.match(/^\s*(?:export\s+)?([A-Za-z_][\w.-]*)\s*([:=])/);
    if (!key) return;
    const name = `"${sanitize(key[1], 60)}"`;
    if (key[2] === ":") {
      problems.push(`Line ${index + 1} of the .env is not read: ${name} is followed by ":", and dotenv wants "="`);
    } else if (/^[^'"`]/.test(line.slice(key[0].length)) && /^#|\S#/.test(line.slice(key[0].length))) {
      problems.push(
        `Line ${
          index + 1
        } of the .env cuts the value of ${name} at "#" (the rest reads as a comment): put the value in quotes`,
      );
    }
  });
  return problems;
}

/** What `dotenvLineProblems` found in each `.env` that `readEnvFile` read. */
const dotenvProblems = new WeakMap<object, string[]>();

/**
 * Reads a dotenv file with `parseEnv` from `node:util` (loaded only when the file exists), without
 * touching the environment. Tolerates what editors write: a UTF-8 byte order mark, CRLF or CR line
 * ends, `export ` prefixes, quotes and comments; what it would misread is kept for a warning.
 */
const readEnvFile = (async function readEnvFile(path: string): Promise<Record<string, string> | undefined> {
  let text: string;
  try {
    if (!Deno.statSync(path).isFile) return undefined;
    text = Deno.readTextFileSync(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotCapable) throw error; // said as a missing permission, not "no file"
    return undefined; // no file: node:util (costly to load) is not needed
  }
  const { parseEnv } = await import("node:util");
  const dotenv = parseDotenv(text, parseEnv);
  const problems = dotenvLineProblems(text);
  if (problems.length > 0) dotenvProblems.set(dotenv, problems);
  return dotenv;
}).bind(undefined);

// ── 6 Profiles: named sets of settings in the user's config file ───────────────────────────────────────────────────

/**
 * smol-toml: a small TOML 1.0 parser and serialiser with no dependencies that says on which line a
 * file is wrong. Loaded only when a profile is used, so runs without one never pay for it.
 */
async function toml(): Promise<typeof import("npm:smol-toml@1.9.1")> {
  return await import("npm:smol-toml@1.9.1");
}

/** Flags that belong to one run rather than to a login: a profile neither sets nor saves them. */
const RUN_FLAGS = new Set<string>([
  "help",
  "version",
  "json",
  "verbose",
  "quiet",
  "env-file",
  "all",
  "format",
  "interactive",
  "profile",
  "save-profile",
  "client-secret",
  "env-name",
  // One request's, for `fetch` and `token --format headers`.
  "method",
  "url",
  "request",
  "header",
  "data",
  "include",
]);

/** The flags a profile may hold (as `profile_key`s, see `profileKey`): every flag of a login, none of one run's. */
function profileFlagNames(): Flag[] {
  return (Object.keys(FLAGS) as Flag[]).filter((flag) => !RUN_FLAGS.has(flag));
}

/** Flags whose profile value is written as a TOML integer. */
const NUMERIC_FLAGS = new Set<string>(["port", "timeout", "min-ttl"]);

/** What a profile may be called: a TOML bare key, so the file stays plain. */
const PROFILE_NAME = /^[A-Za-z0-9_-]{1,64}$/;

/** A profile read from the config file, as the flag values it stands for (`client_id` → `--client-id`). */
interface Profile {
  name: string;
  /** The config file ("" when there is none to read). */
  path: string;
  /** How it was chosen: `--profile`, `OAUTH_PROFILE`, `OAUTH_PROFILE in .env`, `default_profile` or `--save-profile`. */
  chosenBy: string;
  flags: FlagValues;
}

/** A profile's key for a flag: snake_case (`client-id` → `client_id`); the `--param`s are the `params` table. */
const profileKey = (function profileKey(flag: string): string {
  return flag === "param" ? "params" : flag.replaceAll("-", "_");
}).bind(undefined);

function camelCase(flag: string): string {
  return flag.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
}

/** The profile's value for a setting that also has a variable (`clientId` → `client_id`), for `pick`. */
const profileValue = (function profileValue(profile: Profile | undefined, key: string): string | undefined {
  const value = profile?.flags[flagOf(key)];
  // A switch (`dpop = true`) reads as its variable would be written: "1" or "0".
  return typeof value === "string" ? value : typeof value === "boolean" ? (value ? "1" : "0") : undefined;
}).bind(undefined);

/**
 * The flags with the profile's values beneath them. Settings that have a variable are left to `pick`
 * (flag > environment > `.env` > profile); a `--param` replaces the profile's parameter of the same name.
 */
const withProfile = (function withProfile(
  flags: FlagValues,
  profile: Profile | undefined,
  sources: Record<string, ValueSource>,
): FlagValues {
  if (!profile) return flags;
  const merged: Record<string, unknown> = { ...flags };
  for (const [flag, value] of Object.entries(profile.flags)) {
    const key = camelCase(flag);
    if (Object.hasOwn(ENV_VARS, key)) continue;
    if (flag === "param") {
      const own = new Set((flags.param ?? []).map((p) => p.split("=")[0]));
      const inherited = (value as string[]).filter((p) => !own.has(p.split("=")[0]));
      if (inherited.length > 0) sources.params = "profile";
      merged.param = [...inherited, ...(flags.param ?? [])];
    } else if (merged[flag] === undefined) {
      merged[flag] = value;
      sources[key] = "profile";
    }
  }
  return merged as FlagValues;
}).bind(undefined);

function isTable(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value) && !(value instanceof Date);
}

/**
 * Reads one profile's table as flag values. A client secret (or anything named like a secret) is a
 * configuration error; an unknown key is a warning. Pure, apart from `warn`.
 */
function profileFlags(
  table: Record<string, unknown>,
  where: { name: string; path: string },
  warn: (text: string) => void,
): FlagValues {
  const byKey = new Map(profileFlagNames().map((f) => [profileKey(f), f]));
  const flags: Record<string, unknown> = {};
  const path = sanitize(where.path);
  for (const [key, value] of Object.entries(table)) {
    const setting = `"${sanitize(key)}" in the profile "${sanitize(where.name)}" of ${path}`;
    const flag = byKey.get(key);
    if (!flag && /secret|password/i.test(key)) {
      throw new LoginError("config", `The config file holds a secret: ${setting}`, {
        hint:
          `remove it from the file and set ${ENV_VARS.clientSecret} in the environment or in .env; secrets never go in the config file`,
      });
    }
    if (!flag) {
      warn(`warning: Unknown setting ${setting}; it is ignored`);
      continue;
    }
    const spec = FLAGS[flag] as { type: string; multiple?: boolean };
    const scalar = (v: unknown) =>
      typeof v === "string" ? v : typeof v === "number" || typeof v === "bigint" ? String(v) : undefined;
    if (flag === "param") {
      const entries = isTable(value)
        ? Object.entries(value).map(([k, v]) => scalar(v) === undefined ? undefined : `${k}=${scalar(v)}`)
        : Array.isArray(value)
        ? value.map(scalar)
        : [undefined];
      if (entries.some((e) => e === undefined)) {
        throw new LoginError("config", `The setting ${setting} is not a table of strings`, {
          hint: 'write it as params = { audience = "https://api.example.com" }',
        });
      }
      flags.param = entries;
    } else if (spec.type === "boolean") {
      if (typeof value !== "boolean") {
        throw new LoginError("config", `The setting ${setting} is not true or false`);
      }
      flags[flag] = value;
    } else if (spec.multiple) {
      if (!Array.isArray(value) || value.some((v) => scalar(v) === undefined)) {
        throw new LoginError("config", `The setting ${setting} is not a list of strings`);
      }
      flags[flag] = value.map(scalar);
    } else {
      if (scalar(value) === undefined) throw new LoginError("config", `The setting ${setting} is not a string`);
      flags[flag] = scalar(value);
    }
  }
  return flags as FlagValues;
}

/**
 * The `--param`s a saved profile keeps: public authorization request parameters (OpenID Connect
 * Core §3.1.2.1, RFC 8707, RFC 9396, and those the presets' providers document), by name. Any other
 * may carry a secret (an API key, a token, an assertion), whatever it is called: the login uses it,
 * the config file never holds it.
 */
const PROFILE_PARAMS = new Set([
  "access_type",
  "acr_values",
  "allow_signup",
  "approval_prompt",
  "audience",
  "authorization_details",
  "claims",
  "claims_locales",
  "connection",
  "display",
  "domain_hint",
  "duration",
  "hd",
  "identity_provider",
  "idp",
  "include_granted_scopes",
  "kc_idp_hint",
  "login",
  "login_hint",
  "max_age",
  "organization",
  "prompt",
  "resource",
  "screen_hint",
  "token_access_type",
  "ui_locales",
]);

/**
 * The settings a login ran with, as a profile's table: each flag's value, else (for settings that
 * have a variable) the environment's or `.env`'s, else the profile's. Never a secret: of the
 * `--param`s only PROFILE_PARAMS are kept, and `withheld` names the others. Pure.
 */
function profileSettings(
  flags: FlagValues,
  env: (name: string) => string | undefined,
  dotenv: Record<string, string>,
  profile?: Profile,
): { settings: Record<string, unknown>; withheld: string[] } {
  const table: Record<string, unknown> = {};
  const withheld: string[] = [];
  const merged = withProfile(flags, profile, {}) as Record<string, unknown>;
  for (const flag of Object.keys(FLAGS)) {
    if (RUN_FLAGS.has(flag)) continue;
    const variable = (ENV_VARS as Record<string, string>)[camelCase(flag)];
    let value = merged[flag];
    // Where secrets are kept is the machine's choice (its environment), saved only when given as a flag.
    const personal = (PERSONAL_KEYS as readonly string[]).includes(camelCase(flag));
    if (personal) value = flags[flag as Flag] || profile?.flags[flag as Flag];
    else if (variable) value = flags[flag as Flag] || env(variable) || dotenv[variable] || profile?.flags[flag as Flag];
    if (value === undefined || value === "" || value === false) continue;
    if (flag === "param") {
      const params: Record<string, string> = {};
      for (const param of value as string[]) {
        const [key, ...rest] = param.split("=");
        if (PROFILE_PARAMS.has(key)) params[key] = rest.join("=");
        else if (!withheld.includes(key)) withheld.push(key);
      }
      if (Object.keys(params).length > 0) table.params = params;
    } else if (NUMERIC_FLAGS.has(flag) && String(Number(value)) === value) table[profileKey(flag)] = Number(value);
    else table[profileKey(flag)] = value;
  }
  return { settings: table, withheld };
}

/** The note that names the `--param`s a saved profile left out (see PROFILE_PARAMS). */
function withheldNote(names: string[]): string {
  const quoted = names.map((name) => `"${sanitize(name)}"`);
  const list = quoted.length === 1 ? quoted[0] : `${quoted.slice(0, -1).join(", ")} and ${quoted.at(-1)}`;
  const one = names.length === 1;
  return `note: The parameter${one ? "" : "s"} ${list} ${one ? "was" : "were"} not saved: a profile keeps only ` +
    `public authorization parameters, as any other may be a secret; give ${
      one ? "it" : "them"
    } with --param at each login`;
}

/** The `.env`'s variables less those set aside (see `decideTrust`, `SOURCE_KEYS`): what `--save-profile` may save. */
function usableDotenv(
  dotenv: Record<string, string> | undefined,
  config: Pick<Config, "trust">,
): Record<string, string> {
  // Neither where the person's secrets are kept nor which of their tokens a grant reads: never a project file's.
  const personal: string[] = [...PERSONAL_KEYS, ...SOURCE_KEYS].map((key) => ENV_VARS[key]);
  return Object.fromEntries(
    Object.entries(dotenv ?? {}).filter(([name]) => !config.trust?.ignored.includes(name) && !personal.includes(name)),
  );
}

/** `--save-profile` when a `.env` decided where to sign in: a profile is trusted everywhere, a project file is not. */
function cannotSaveProjectDestination(name: string, config: Config, envFile: string): LoginError {
  const server = withoutIssuer(config)
    ? `--token-endpoint ${shellWord(config.tokenEndpoint!)}`
    : config.sources.issuer === "default" && config.provider
    ? `--provider ${shellWord(config.provider)}`
    : `--issuer ${shellWord(config.metadataUrl ?? displayIssuer(config.issuer))}`;
  return new LoginError(
    "config",
    `Cannot save the profile "${name}": where to sign in comes from ${envFile}, a project file`,
    {
      hint: `if you trust that server, name it yourself: ${server}`,
    },
  );
}

/** `$OAUTH_LOGIN_CONFIG`, else `config.toml` in `$XDG_CONFIG_HOME/oauth-login`, else in the platform's config directory. */
function configPath(env: (name: string) => string | undefined, os: string): string | undefined {
  const explicit = env(ENV_VARS.config);
  if (explicit) return explicit;
  const xdg = env("XDG_CONFIG_HOME");
  if (xdg) return `${xdg}/oauth-login/config.toml`;
  if (os === "windows") {
    const appData = env("APPDATA");
    return appData ? `${appData}\\oauth-login\\config.toml` : undefined;
  }
  const home = env("HOME");
  if (!home) return undefined;
  return os === "darwin"
    ? `${home}/Library/Application Support/oauth-login/config.toml`
    : `${home}/.config/oauth-login/config.toml`;
}

/** The config file, parsed. */
interface ConfigFile {
  path: string;
  text: string;
  data: Record<string, unknown>;
}

/** Parses the config file's text; a syntax error names its line. */
async function parseConfig(text: string, path: string): Promise<Record<string, unknown>> {
  const { parse, TomlError } = await toml();
  try {
    return parse(text);
  } catch (error) {
    if (!(error instanceof TomlError)) throw error;
    const reason = error.message.split("\n")[0].replace(/^Invalid TOML document: /, "");
    throw new LoginError(
      "config",
      `The config file "${sanitize(path)}" is not valid TOML: line ${error.line}: ${sanitize(reason)}`,
      { hint: "fix that line; runs that use no profile do not read the file" },
    );
  }
}

/**
 * Why a file that decides where a secret goes or who signs in (the config file, a token file) is not
 * one to trust, or undefined (SECURITY.md 15, the cache's rules): it must be a regular file of the
 * user's (or root's, who can change anything) that no one else can change, in folders no one else can
 * change, or that are sticky (others may not replace what is not theirs: /tmp, a projected volume's
 * folder); a link (a dotfiles manager's, the kubelet's) counts for the file it leads to, and its own
 * folder must be as safe. `what`: "config file" or "token file"; `user`: the user's uid, or when Deno
 * does not say, the owner of the file's folder; `elsewhere`: the hint to use another file. As OpenSSH
 * treats ~/.ssh/config. Pure.
 */
function trustedFileProblem(
  what: "config file" | "token file",
  path: string,
  facts: { file: FileFacts; folders: [string, FileFacts][] },
  user: number | null | undefined,
  elsewhere: string,
): LoginError | undefined {
  // A config file of the person's is theirs alone; a token file others may read (a projected token is 0644).
  const [fix, fileMode, folderMode] = what === "config file"
    ? ["make it private with", "600", "700"]
    : ["make it writable by its owner alone", "go-w", "go-w"];
  const shown = sanitize(path);
  const { file, folders } = facts;
  const own = (uid: number | null) => uid === null || user == null || uid === user || uid === 0;
  if (!file.isFile) {
    return new LoginError("config", `The ${what} "${shown}" is not a regular file`, { hint: elsewhere });
  }
  if (!own(file.uid)) {
    return new LoginError("config", `The ${what} "${shown}" belongs to another user`, { hint: elsewhere });
  }
  if (file.mode !== null && (file.mode & 0o022) !== 0) {
    return new LoginError("config", `The ${what} "${shown}" can be changed by other users`, {
      hint: `${fix}: chmod ${fileMode} ${shellWord(path)}`,
    });
  }
  for (const [dir, folder] of folders) {
    const mode = folder.mode ?? 0;
    if (own(folder.uid) && ((mode & 0o022) === 0 || (mode & 0o1000) !== 0)) continue;
    return new LoginError(
      "config",
      `The ${what}'s folder "${sanitize(dir)}" ${
        own(folder.uid) ? "can be changed by other users" : "belongs to another user"
      }`,
      {
        hint: own(folder.uid) ? `${fix}: chmod ${folderMode} ${shellWord(dir)}; or ${elsewhere}` : elsewhere,
      },
    );
  }
  return undefined;
}

/**
 * What `trustedFileProblem` judges a path by: the file (a link's target) and the folders of the link
 * and of its target. Throws what `Deno.lstat` and `Deno.stat` throw (NotFound).
 */
async function trustFacts(
  path: string,
): Promise<{ real: string; file: Deno.FileInfo; folders: [string, FileFacts][] }> {
  const link = await Deno.lstat(path);
  const real = link.isSymlink ? await Deno.realPath(path) : path;
  const folders: [string, FileFacts][] = [];
  for (const dir of new Set([parentOf(path), parentOf(real)])) folders.push([dir, await Deno.stat(dir)]);
  return { real, file: link.isSymlink ? await Deno.stat(real) : link, folders };
}

/** The folder a path is in. */
function parentOf(path: string): string {
  const cut = Math.max(path.lastIndexOf("/"), path.lastIndexOf("\\"));
  return cut < 0 ? "." : cut === 0 ? path.slice(0, 1) : path.slice(0, cut);
}

/** Reads and parses the config file, once `trustedFileProblem` finds nothing wrong with it; undefined when there is none. */
async function readConfigFile(path: string): Promise<ConfigFile | undefined> {
  let text: string;
  try {
    const facts = await trustFacts(path);
    const user = userId() ?? facts.folders[0][1].uid;
    const problem = trustedFileProblem(
      "config file",
      path,
      facts,
      user,
      `set ${ENV_VARS.config} to a file of your own`,
    );
    if (problem) throw problem;
    text = await Deno.readTextFile(facts.real);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    if (error instanceof LoginError || error instanceof Deno.errors.NotCapable) throw error;
    throw new LoginError(
      "config",
      `Cannot read the config file "${sanitize(path)}": ${sanitize((error as Error).message)}`,
    );
  }
  return { path, text, data: await parseConfig(text, path) };
}

/** The profiles a config file holds: its top-level tables, in the file's order. */
function profileNames(data: Record<string, unknown> | undefined): string[] {
  return Object.entries(data ?? {}).filter(([, value]) => isTable(value)).map(([name]) => name);
}

/** Which profile the run names, and how: `--profile`, else `OAUTH_PROFILE` in the environment, then in `.env`. */
const namedProfile = (function namedProfile(
  flags: FlagValues,
  env: (name: string) => string | undefined,
  dotenv: Record<string, string> | undefined,
): { name: string; by: string } | undefined {
  if (flags.profile) return { name: flags.profile, by: "--profile" };
  const variable = env(ENV_VARS.profile);
  if (variable) return { name: variable, by: ENV_VARS.profile };
  const fromFile = dotenv?.[ENV_VARS.profile];
  if (fromFile) return { name: fromFile, by: `${ENV_VARS.profile} in .env` };
  return undefined;
}).bind(undefined);

/** The first setting outside any profile that names the server (`--provider`, `OAUTH_ISSUER in .env`), if any. */
const serverNamedElsewhere = (function serverNamedElsewhere(
  flags: FlagValues,
  env: (name: string) => string | undefined,
  dotenv: Record<string, string> | undefined,
): string | undefined {
  for (const key of DESTINATION_KEYS) {
    const variable = (ENV_VARS as Record<string, string>)[key];
    if (flags[flagOf(key)]) return `--${flagOf(key)}`;
    if (env(variable)) return `${variable} in the environment`;
    // A project's .env may stand for the server only whole (its issuer or preset); its endpoints alone
    // never set the person's default profile aside (they are ignored, with a warning: see decideTrust).
    if ((key === "issuer" || key === "provider") && dotenv?.[variable]) return `${variable} in .env`;
  }
  return undefined;
}).bind(undefined);

/** `--verbose`: says that the config file's default profile was left out, and why (reads the file only then). */
async function traceDefaultProfileLeftOut(named: string, deps: Pick<Deps, "env" | "os" | "stderr">): Promise<void> {
  const path = configPath(deps.env, deps.os);
  const file = path ? await readConfigFile(path).catch(() => undefined) : undefined;
  const name = file?.data.default_profile;
  if (typeof name !== "string") return;
  deps.stderr(
    `trace: the default profile "${sanitize(name)}" of ${sanitize(path)} is not used: ${named} names the server\n`,
  );
}

/**
 * The profile this run uses. The config file is read only when one is named (`--profile`,
 * `OAUTH_PROFILE`), when `--save-profile` is given, or when nothing else sets the issuer or a provider
 * (then its `default_profile` applies): a run configured by flags, the environment or `.env` reads no file.
 * An unknown name is a usage error listing the known ones.
 */
const selectProfile = (async function selectProfile(
  cli: Cli,
  dotenv: Record<string, string> | undefined,
  deps: Pick<Deps, "env" | "os" | "stderr">,
): Promise<Profile | undefined> {
  const { flags } = cli;
  const saving = flags["save-profile"];
  let chosen = namedProfile(flags, deps.env, dotenv);
  // A project file may choose the profile only where it could choose the server itself (SECURITY.md 13).
  const own = chosen?.by === `${ENV_VARS.profile} in .env`
    ? decideTrust(flags, deps.env, {}, undefined).by[0]
    : undefined;
  if (own) {
    deps.stderr(
      `warning: Ignoring ${ENV_VARS.profile} in .env: a project file cannot choose the profile when ${own} names the server\n`,
    );
    chosen = undefined;
  }
  if (!chosen && saving === undefined) {
    if (flags.all && (cli.command === "logout" || cli.command === "whoami")) return undefined;
    // A server named elsewhere (an issuer, a preset or its tenant, an endpoint) is not the default profile's.
    const named = serverNamedElsewhere(flags, deps.env, dotenv);
    if (named) {
      if (flags.verbose) await traceDefaultProfileLeftOut(named, deps);
      return undefined;
    }
  }
  for (const name of [chosen?.name, saving]) {
    if (name !== undefined && (!PROFILE_NAME.test(name) || name === "default_profile")) {
      throw new LoginError("usage", `The profile name "${sanitize(name)}" is not allowed`, {
        hint: "use letters, digits, - and _ (at most 64), other than default_profile",
      });
    }
  }
  const path = configPath(deps.env, deps.os);
  if (!path) {
    if (!chosen && saving === undefined) return undefined;
    throw new LoginError("config", "Cannot find a directory for the config file", {
      hint: `set ${ENV_VARS.config} to a file, or set HOME`,
    });
  }
  const file = await readConfigFile(path);
  if (!chosen && saving === undefined) {
    const name = file?.data.default_profile;
    if (name === undefined) return undefined;
    if (typeof name !== "string") {
      throw new LoginError("config", `The "default_profile" in "${sanitize(path)}" is not a string`);
    }
    chosen = { name, by: "default_profile" };
  }
  if (!chosen) return { name: saving!, path, chosenBy: "--save-profile", flags: {} };
  const table = file?.data[chosen.name];
  if (!isTable(table)) {
    const known = profileNames(file?.data);
    throw new LoginError(
      chosen.by === "default_profile" ? "config" : "usage",
      `The profile "${sanitize(chosen.name)}" (from ${chosen.by}) is not in "${sanitize(path)}"`,
      {
        hint: known.length > 0
          ? `known profiles: ${known.map((n) => sanitize(n)).join(", ")}`
          : 'there are no profiles yet: save one with "oauth-login login --issuer URL --client-id ID --save-profile NAME"',
      },
    );
  }
  return {
    name: saving ?? chosen.name,
    path,
    chosenBy: chosen.by,
    flags: profileFlags(table, { name: chosen.name, path }, (text) => say(deps, text)),
  };
}).bind(undefined);

/** The first segment of a table header's name (`[work.params]` → `work`), or undefined for other lines. */
function headerProfile(line: string): string | undefined {
  const match = line.match(/^\s*\[\[?\s*("(?:[^"\\]|\\.)*"|'[^']*'|[A-Za-z0-9_-]+)/);
  if (!match) return undefined;
  const name = match[1];
  if (name.startsWith("'")) return name.slice(1, -1);
  if (name.startsWith('"')) {
    try {
      return JSON.parse(name);
    } catch {
      return name;
    }
  }
  return name;
}

/**
 * The config file's text with one profile's table (and its sub-tables) replaced by `table`, or
 * appended when the file has none: every other line, comments included, stays as it was. TOML
 * libraries do not keep comments, so this edits text; comment lines inside the replaced table go
 * with it, and those just above the next table stay with that table. Pure.
 */
function replaceProfileText(text: string, name: string, table: string): string {
  const lines = text === "" ? [] : text.replace(/\r?\n$/, "").split(/\r?\n/);
  const newline = /\r\n/.test(text) ? "\r\n" : "\n";
  const out: string[] = [];
  let inside = false;
  let placed = false;
  let held: string[] = []; // the blank and comment lines since the table's last key
  for (const line of lines) {
    const header = /^\s*\[/.test(line) ? headerProfile(line) : undefined;
    if (header !== undefined) {
      if (header === name) {
        if (!placed) out.push(...table.replace(/\n+$/, "").split("\n"));
        placed = true;
        inside = true;
        held = [];
        continue;
      }
      // The comment lines right above the next table's header (no blank line between) are that table's.
      if (inside) out.push("", ...held.slice(held.findLastIndex((l) => l.trim() === "") + 1));
      inside = false;
    }
    if (!inside) {
      out.push(line);
      continue;
    }
    if (line.trim() === "" || line.trim().startsWith("#")) held.push(line);
    else held = [];
  }
  if (!placed) {
    while (out.length > 0 && out[out.length - 1].trim() === "") out.pop();
    if (out.length > 0) out.push("");
    out.push(...table.replace(/\n+$/, "").split("\n"));
  }
  return `${out.join(newline)}${newline}`;
}

/**
 * `login --save-profile NAME`: writes the settings the login ran with as the profile's table, keeping
 * the rest of the file; checks by parsing the result that it reads back as written before replacing
 * the file (atomically, owner-only; a symlinked file is written where it points).
 */
/** Writes the `[name]` table (see `replaceProfileText`); returns whether it replaced different settings. */
async function saveProfile(path: string, name: string, settings: Record<string, unknown>): Promise<boolean> {
  const { stringify } = await toml();
  const target = await Deno.realPath(path).catch(() => path);
  const before = await readConfigFile(target);
  const text = replaceProfileText(before?.text ?? "", name, stringify({ [name]: settings }));
  const after = await parseConfig(text, path);
  // Compared with keys sorted: the file's order need not be the order the settings were gathered in.
  const canonical = (v: unknown): unknown =>
    isTable(v)
      ? Object.fromEntries(Object.keys(v).sort().map((k) => [k, canonical(v[k])]))
      : Array.isArray(v)
      ? v.map(canonical)
      : typeof v === "bigint"
      ? Number(v)
      : v;
  const same = (a: unknown, b: unknown) => JSON.stringify(canonical(a)) === JSON.stringify(canonical(b));
  const kept = Object.keys(before?.data ?? {}).every((key) => key === name || same(before!.data[key], after[key]));
  if (!same(after[name], settings) || !kept || Object.keys(after).some((k) => k !== name && !(k in before!.data))) {
    throw new LoginError(
      "failure",
      `Cannot save the profile "${name}": the edited "${sanitize(path)}" would not read back as written`,
      {
        hint: `the file was left as it was; add the [${name}] table by hand (see "oauth-login profiles --help")`,
      },
    );
  }
  const replaced = isTable(before?.data[name]) && !same(before!.data[name], settings);
  try {
    await writePrivateFile(target, text);
  } catch (error) {
    throw new LoginError(
      "failure",
      `Cannot save the profile "${name}" to "${sanitize(path)}": ${sanitize((error as Error).message)}`,
      {
        hint: `check that you can write to that directory, or set ${ENV_VARS.config} to another file`,
      },
    );
  }
  return replaced;
}

// ── 7 Providers: each preset's quirks, as data ─────────────────────────────────────────────────────────────────────

/** What a provider needs beyond the RFCs, and nothing else (see the README's provider table). */
interface Preset {
  /** The issuer where the provider has discovery; `{tenant}` is filled from `--tenant`. */
  issuer?: string;
  /** An example issuer, for providers where each customer has its own (Okta, Auth0, Keycloak, Cognito). */
  issuerExample?: string;
  /**
   * Its tenants (Entra): `--tenant` applies only to such a preset, `default` fills the issuer's
   * `{tenant}` when none is given, and for the `aliases` the metadata may name an issuer template
   * with `{tenantid}`, which each ID token's `tid` fills (see `issuerFor`).
   */
  tenants?: { default: string; aliases: string[] };
  /** Issuer hosts that name this preset (beyond its `issuer`'s own host), for `inferProvider`. */
  issuerHost?: RegExp;
  /** An issuer path that names this preset on any host (Keycloak's `/realms/NAME`), and how to show it. */
  issuerPath?: { pattern: RegExp; shown: string };
  /** Other `iss` values its ID tokens may carry (Google's scheme-less `accounts.google.com`). */
  acceptedIssuers?: string[];
  /** When a login brought no refresh token: the parameter that asks for one, and the hint that says so. */
  refreshRemedy?: { param: [string, string]; hint: string };
  /** Endpoints its metadata lacks (or all of them, with no discovery); a path is relative to the issuer. */
  endpoints?: Partial<Record<EndpointKey, string>>;
  /** The default scope. */
  scope?: string;
  /** Its authorization endpoint reads commas in `scope` as separators too (GitHub's own answers use them). */
  commaScopes?: boolean;
  /** Extra authorization parameters it wants (for a refresh token, say). */
  params?: [string, string][];
  prompt?: string;
  /** The client authentication its token endpoint takes, when a secret is configured. */
  clientAuth?: ClientAuthMethod;
  /** The member of its "who am I" answer that names the person. */
  userClaim?: string;
  /** The loopback host its registrations use, and the callback path. */
  loopbackHost?: "127.0.0.1" | "localhost";
  callbackPath?: string;
  /** Redirect hosts it refuses. */
  refusedRedirectHosts?: string[];
  /** Why it needs a client secret even for PKCE, when it does (Google). */
  needsSecret?: string;
  /** Its own revocation API, not RFC 7009 (GitHub's `DELETE /applications/{client_id}/token`). */
  tokenDeletionEndpoint?: string;
  /** Its own revocation API, called with the access token as a Bearer token (Dropbox's `POST /2/auth/token/revoke`). */
  bearerRevocationEndpoint?: string;
  /**
   * The hosts its endpoints are on, when there are several (its issuer's, its metadata's, its own
   * above): all the provider's. When a project file picks the preset and the person signs in on one of
   * them, the code and the tokens may go to any of them, and to no other (`projectOrigins`).
   */
  hosts?: string[];
}

/** The built-in provider presets, each from the provider's public documentation. */
const PRESETS: Record<string, Preset> = {
  github: {
    endpoints: {
      authorizationEndpoint: "https://github.com/login/oauth/authorize",
      tokenEndpoint: "https://github.com/login/oauth/access_token",
      deviceAuthorizationEndpoint: "https://github.com/login/device/code",
      userinfoEndpoint: "https://api.github.com/user",
    },
    scope: "read:user",
    commaScopes: true,
    clientAuth: "client_secret_post",
    userClaim: "login",
    tokenDeletionEndpoint: "https://api.github.com/applications/{client_id}/token",
    hosts: ["github.com", "api.github.com"],
  },
  gitlab: {
    issuer: "https://gitlab.com",
    endpoints: { deviceAuthorizationEndpoint: "/oauth/authorize_device" },
    scope: "openid profile",
  },
  google: {
    issuer: "https://accounts.google.com",
    scope: "openid email profile",
    params: [["access_type", "offline"]],
    prompt: "consent",
    acceptedIssuers: ["accounts.google.com"],
    refreshRemedy: {
      param: ["access_type", "offline"],
      hint: "ask for one with --param access_type=offline --prompt consent",
    },
    needsSecret:
      "Google's token endpoint demands the client secret even with PKCE (a Desktop app's is not confidential)",
    hosts: ["accounts.google.com", "oauth2.googleapis.com", "openidconnect.googleapis.com", "www.google.com"],
  },
  entra: {
    issuer: "https://login.microsoftonline.com/{tenant}/v2.0",
    tenants: { default: "common", aliases: ["common", "organizations", "consumers"] },
    scope: "openid profile offline_access",
    loopbackHost: "localhost",
    callbackPath: "/",
    hosts: ["login.microsoftonline.com", "graph.microsoft.com", "microsoft.com", "login.microsoft.com"],
  },
  okta: { issuerExample: "https://YOUR-ORG.okta.com/oauth2/default", issuerHost: /\.okta(preview)?\.com$/ },
  auth0: {
    issuerExample: "https://YOUR-TENANT.us.auth0.com/",
    issuerHost: /\.auth0\.com$/,
    scope: "openid profile email offline_access",
  },
  keycloak: {
    issuerExample: "https://HOST/realms/REALM",
    issuerPath: { pattern: /^(\/auth)?\/realms\/[^/]+\/?$/, shown: "/realms/…" },
  },
  cognito: {
    issuerExample: "https://cognito-idp.REGION.amazonaws.com/POOL_ID",
    issuerHost: /^cognito-idp\.[a-z0-9-]+\.amazonaws\.com$/,
    scope: "openid profile email",
    userClaim: "cognito:username",
  },
  salesforce: { issuer: "https://login.salesforce.com", scope: "openid profile refresh_token" },
  dropbox: {
    issuer: "https://www.dropbox.com",
    bearerRevocationEndpoint: "https://api.dropboxapi.com/2/auth/token/revoke",
    scope: "openid email profile",
    params: [["token_access_type", "offline"]],
    hosts: ["www.dropbox.com", "api.dropboxapi.com"],
  },
  spotify: {
    issuer: "https://accounts.spotify.com",
    endpoints: { userinfoEndpoint: "https://api.spotify.com/v1/me" },
    scope: "user-read-private user-read-email",
    userClaim: "id",
    refusedRedirectHosts: ["localhost"],
    hosts: ["accounts.spotify.com", "api.spotify.com"],
  },
};

/** The preset an issuer's host (or path) names unambiguously, and why: each preset's `issuer` host, `issuerHost` or `issuerPath`. */
const inferProvider: (issuer: string) => { provider: string; reason: string } | undefined =
  (function inferProvider(issuer: string): { provider: string; reason: string } | undefined {
    const url = parseUrl(issuer);
    if (!url) return undefined;
    const host = url.hostname.toLowerCase();
    for (const [name, preset] of Object.entries(PRESETS)) {
      const own = preset.issuer ? parseUrl(preset.issuer.replace("{tenant}", "x"))?.hostname : undefined;
      if (host === own || preset.issuerHost?.test(host)) {
        return { provider: name, reason: `inferred from the issuer host ${host}` };
      }
      if (preset.issuerPath?.pattern.test(url.pathname)) {
        return { provider: name, reason: `inferred from the issuer path ${preset.issuerPath.shown}` };
      }
    }
    return undefined;
  }).bind(undefined);

/** A URL a preset names, with its origin replaced by `base` (tests point presets at a loopback mock). */
function rebase(url: string, base: string | undefined): string {
  if (!base) return url;
  const parsed = new URL(url);
  return `${base}${parsed.pathname === "/" ? "" : parsed.pathname}${parsed.search}`;
}

/**
 * A preset's endpoint `key` as a URL: a path on the issuer (Okta's, Keycloak's), or the provider's own
 * URL as `rebase` moves it for tests; undefined when the preset has none. Pure.
 */
function presetEndpoint(
  preset: Preset | undefined,
  key: EndpointKey,
  issuerText: string | undefined,
  presetBase?: string,
): string | undefined {
  const url = preset?.endpoints?.[key];
  if (url === undefined) return undefined;
  return url.startsWith("/")
    ? new URL(url, parseIssuer(issuerText ?? "https://invalid").issuer).href
    : rebase(url, presetBase);
}

/** The origins of a preset's own hosts (`Preset.hosts`), as `rebase` moves them for tests. Pure. */
function presetOrigins(preset: Preset | undefined, presetBase?: string): string[] {
  return (preset?.hosts ?? []).map((host) => new URL(rebase(`https://${host}/`, presetBase)).origin);
}

/**
 * Whether a preset's own URLs (its endpoints, its revocation API) belong to a login whose server is at
 * `url`: a preset without hosts of its own, or `url` on one of them. GitHub's API gets no token of a
 * GitHub Enterprise server given by its endpoints under `--provider github`. Pure.
 */
function presetServes(preset: Preset | undefined, url: string, presetBase?: string): boolean {
  const origins = presetOrigins(preset, presetBase);
  const origin = parseUrl(url)?.origin;
  return origins.length === 0 || (origin !== undefined && origins.includes(origin));
}

/**
 * The provider preset: named (--provider) or inferred from the issuer, the tenant, and the issuer the preset
 * implies when none is given. Throws LoginError("usage") for an unknown provider or a misplaced tenant.
 */
const resolvePreset = (function resolvePreset(
  flags: FlagValues,
  pick: ConfigPick,
  sources: Record<string, ValueSource>,
  issuerText: string | undefined,
  options: { presetBase?: string },
): { issuerText?: string; provider?: string; providerReason?: string; preset?: Preset; tenant?: string } {
  // Provider presets: named (--provider), or inferred from the issuer where its host is unambiguous.
  let provider = pick("provider", flags.provider, ENV_VARS.provider)?.toLowerCase();
  const tenantText = pick("tenant", flags.tenant, ENV_VARS.tenant);
  let providerReason = provider ? `from ${sources.provider}` : undefined;
  if (provider !== undefined && !Object.hasOwn(PRESETS, provider)) {
    throw new LoginError("usage", `The provider "${sanitize(provider)}" has no preset`, {
      hint: `use one of ${Object.keys(PRESETS).join(", ")}, or give --issuer (or the endpoints) yourself`,
    });
  }
  if (tenantText !== undefined && !/^[A-Za-z0-9][A-Za-z0-9.-]*$/.test(tenantText)) {
    throw new LoginError("usage", `The tenant "${sanitize(tenantText)}" is not a tenant id or domain name`);
  }
  let preset = provider ? PRESETS[provider] : undefined;
  let tenant = tenantText;
  if (!issuerText && preset?.issuer) {
    tenant ??= preset.tenants?.default;
    issuerText = rebase(preset.issuer.replace("{tenant}", tenant ?? ""), options.presetBase);
    sources.issuer = "default";
  }
  if (!provider && issuerText) {
    const inferred = inferProvider(parseIssuer(issuerText).issuer);
    if (inferred) {
      ({ provider, reason: providerReason } = inferred);
      preset = PRESETS[provider];
    }
  }
  if (tenantText !== undefined && !preset?.tenants) {
    const withTenants = Object.keys(PRESETS).filter((name) => PRESETS[name].tenants);
    throw new LoginError("usage", `The tenant applies only to the ${withTenants.join(", ")} preset`, {
      hint: `add --provider ${shellWord(withTenants[0])}, or leave out --tenant`,
    });
  }
  if (preset?.tenants && !tenant && issuerText) {
    tenant = new URL(parseIssuer(issuerText).issuer).pathname.split("/")[1];
  }
  return { issuerText, provider, providerReason, preset, tenant };
}).bind(undefined);

/** The tenant alias of the preset (Entra's `common`, `organizations`, `consumers`) for which `template` stands for the issuer. */
function tenantAlias(template: string, config: Pick<Config, "issuer" | "provider">): string | undefined {
  return presetOf(config)?.tenants?.aliases.find((alias) =>
    parseUrl(template.replace("{tenantid}", alias))?.href === config.issuer
  );
}

/** The preset in force for a configuration, if any. */
function presetOf(config: Pick<Config, "provider">): Preset | undefined {
  return config.provider && Object.hasOwn(PRESETS, config.provider) ? PRESETS[config.provider] : undefined;
}

/**
 * What to try when a login brought no refresh token, only where the server accepts it: `--prompt
 * consent` when `offline_access` was asked for (unless the metadata's `prompt_values_supported` leaves
 * consent out, or it was already given); adding `offline_access` only when `scopes_supported` lists
 * it; Google's own parameters for Google. Otherwise nothing.
 */
function refreshTokenRemedy(scope: string, metadata: Oauth.AuthorizationServer, config: Config): string {
  const remedy = presetOf(config)?.refreshRemedy;
  if (remedy) {
    const [name, wanted] = remedy.param;
    return config.params.some(([key, value]) => key === name && value === wanted) ? "" : `; ${remedy.hint}`;
  }
  if (scopeList(scope).includes("offline_access")) {
    const prompts = metadata.prompt_values_supported;
    const accepted = !Array.isArray(prompts) || prompts.includes("consent");
    return accepted && config.prompt !== "consent" ? "; try --prompt consent" : "";
  }
  const offered = metadata.scopes_supported;
  return Array.isArray(offered) && offered.includes("offline_access")
    ? "; ask for one by adding offline_access to --scope"
    : "";
}

// ── 8 Talking to servers: the one sender, proxies, caps, timeouts and the trace ────────────────────────────────────

/** Every request is aborted after this long (connect, headers and body), unless `Deps.httpTimeoutMs` says otherwise. */
const HTTP_TIMEOUT_MS = 30_000;

/** The most we read of any answer from the issuer (its metadata, tokens, UserInfo...). */
const MAX_BODY_BYTES = 1024 * 1024;

/**
 * The most `fetch` reads of an API's answer, counted after decompression: 32 MiB. Fixed rather than a
 * flag: `fetch` is for API calls, whose answers are far smaller, and it holds the whole answer before
 * writing it (to retry a refused token, to check what goes to a terminal); a larger download goes to
 * curl with `token --format headers`, which streams it.
 */
const API_MAX_BODY_BYTES = 32 * 1024 * 1024;

/** The longest `Retry-After` wait we honour before one more discovery request. */
const MAX_RETRY_AFTER_MS = 10_000;

/** The variables that name a proxy, in the order they are looked up for each scheme (upper case first, as Go). */
const PROXY_VARIABLES = {
  "https:": ["HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"],
  "http:": ["HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"],
} as const;

/** How a request to one URL travels: straight to the host, or through a proxy. */
interface Route {
  /** The proxy's URL (credentials included, never printed), or undefined for a direct connection. */
  proxy?: string;
  /** The variable the proxy came from, or why the connection is direct. */
  reason: string;
  /** The variable `reason` names holds no proxy URL (`proxyUrl`): nothing can be sent, and its value is never shown. */
  invalid?: true;
}

/** Whether a host is this machine: 127.0.0.0/8, ::1 or localhost (and names under `.localhost`). */
function isLoopbackDestination(hostname: string): boolean {
  const host = hostname.toLowerCase().replace(/^\[|\]$/g, "");
  return host === "localhost" || host.endsWith(".localhost") || host === "::1" || /^127(?:\.\d{1,3}){3}$/.test(host);
}

/** Whether a `NO_PROXY` entry covers `host:port`: `*`, a domain and its subdomains, `.domain` (subdomains), an IP, a CIDR, with an optional port. */
function noProxyMatches(entry: string, host: string, port: string): boolean {
  if (entry === "*") return true;
  let name = entry.toLowerCase();
  let wantPort: string | undefined;
  const withPort = name.match(/^(\[[^\]]+\]|[^:]+):(\d+)$/);
  if (withPort) [, name, wantPort] = withPort;
  if (wantPort && wantPort !== port) return false;
  name = name.replace(/^\[|\]$/g, "");
  const cidr = name.match(/^(\d{1,3}(?:\.\d{1,3}){3})\/(\d{1,2})$/);
  if (cidr) {
    const ip = (text: string) => text.split(".").reduce((n, part) => n * 256 + Number(part), 0);
    if (!/^\d{1,3}(?:\.\d{1,3}){3}$/.test(host)) return false;
    const bits = Number(cidr[2]);
    const size = 2 ** (32 - bits);
    return Math.floor(ip(host) / size) === Math.floor(ip(cidr[1]) / size);
  }
  if (name.startsWith("*.")) name = name.slice(1);
  if (name.startsWith(".")) return host.endsWith(name);
  return host === name || host.endsWith(`.${name}`);
}

/**
 * The route of a request to `url`: loopback destinations are always direct (a proxy cannot reach
 * this machine's loopback, as browsers and Go's net/http agree), then `NO_PROXY`/`no_proxy`
 * (comma- or space-separated: `*`, `example.com` with its subdomains, `.example.com` for subdomains
 * only, `*.example.com`, IPs, IPv4 CIDRs, each with an optional `:port`), then `HTTPS_PROXY` or
 * `HTTP_PROXY` by scheme (upper case first, then lower), then `ALL_PROXY`. Pure.
 */
function routeFor(url: URL, env: (name: string) => string | undefined): Route {
  const host = url.hostname.toLowerCase().replace(/^\[|\]$/g, "");
  if (isLoopbackDestination(host)) return { reason: "loopback, never proxied" };
  const variables = PROXY_VARIABLES[url.protocol as keyof typeof PROXY_VARIABLES] ?? [];
  const variable = variables.find((name) => env(name)?.trim());
  if (!variable) return { reason: "no proxy is set" };
  const port = url.port || (url.protocol === "https:" ? "443" : "80");
  const noProxyName = ["NO_PROXY", "no_proxy"].find((name) => env(name)?.trim());
  const entry = noProxyName
    ? env(noProxyName)!.split(/[\s,]+/).find((item) => item && noProxyMatches(item, host, port))
    : undefined;
  if (entry) return { reason: `${noProxyName} has "${sanitize(entry, 80)}"` };
  const proxy = proxyUrl(env(variable)!);
  return proxy ? { proxy: proxy.href.replace(/\/$/, ""), reason: variable } : { reason: variable, invalid: true };
}

/**
 * A proxy variable's value as the proxy's URL (`http://` when it names no scheme), or undefined when it
 * is none: not a URL, no host, or a path, query or fragment, which is what an unencoded `/`, `?` or
 * `#` in a password makes of it (`http://alice:12#4@proxy:3128` would be the host "alice", the port
 * "12"). Its value is then never shown: only the variable's name. Pure.
 */
function proxyUrl(value: string): URL | undefined {
  const text = value.trim();
  const url = parseUrl(/^[a-z][a-z0-9+.-]*:\/\//i.test(text) ? text : `http://${text}`);
  if (!url || !url.hostname || url.pathname.length > 1 || url.search || url.hash || /[?#]$/.test(text)) {
    return undefined;
  }
  return url;
}

/** The error for a proxy variable that holds no proxy URL (see `proxyUrl`): its name, never its value. */
function invalidProxy(variable: string): LoginError {
  return new LoginError("config", `The proxy in ${variable} is not a valid URL`, {
    hint: `write it as http://HOST:PORT, or http://USER:PASSWORD@HOST:PORT with any "#", "/", "?" or "@" in the ` +
      "user name or password percent-encoded (%23, %2F, %3F, %40)",
  });
}

/** A proxy's address for messages: scheme, host and port, never its credentials. */
function describeProxy(proxy: string): string {
  const url = parseUrl(proxy);
  return url ? `${url.protocol}//${url.host}` : "(unparseable)";
}

/** Whether any proxy variable is set: only then does a request need a client of its own. */
function proxiesConfigured(env: (name: string) => string | undefined): boolean {
  return [...PROXY_VARIABLES["https:"], ...PROXY_VARIABLES["http:"]].some((name) => env(name)?.trim());
}

/**
 * RFC 6750 §2.1 `b64token`, the only syntax an access token may have to go into an Authorization
 * header (`1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`): a token with a space or a
 * line break would add to the header, or add a header. Checked in every token answer and before a
 * cached token is printed or sent.
 */
const B64TOKEN = /^[A-Za-z0-9\-._~+/]+=*$/;

/**
 * Whether a token may go to this host over plain http: this machine (127.0.0.0/8, [::1], localhost)
 * and no other. Not the names under `.localhost` that routing keeps direct: a resolver need not know them.
 */
function isLoopbackTokenHost(hostname: string): boolean {
  return isLoopbackDestination(hostname) && !hostname.toLowerCase().endsWith(".localhost");
}

/**
 * Why an access token must not go to `url`, or undefined when it may (SECURITY.md 14): never over
 * plain http except to this machine; and when the login named resources (RFC 8707 `--resource`), only
 * to the origin of the one the token is for (`resource`, else the first of `resources`). Any https
 * origin when none was named, or when the resource is no http(s) URI (`urn:`, `api://`): then where it
 * is served cannot be known. The origin, not a path prefix: it is what a server controls (RFC 6454),
 * and RFC 8707 resources are often bare origins. The one rule for `fetch` and `token --format headers`. Pure.
 */
function tokenRefusal(url: URL, audience: { resource?: string; resources?: string[] } = {}): LoginError | undefined {
  if (url.protocol !== "https:" && !(url.protocol === "http:" && isLoopbackTokenHost(url.hostname))) {
    return new LoginError("usage", `The URL "${sanitize(url.href)}" is not an https URL`, {
      hint: "access tokens are only sent over https (plain http only to this machine: 127.0.0.1, [::1] or localhost)",
    });
  }
  const resource = audience.resource ?? audience.resources?.[0];
  const origin = (text: string | undefined) => {
    const parsed = text === undefined ? undefined : parseUrl(text);
    return parsed && (parsed.protocol === "https:" || parsed.protocol === "http:") ? parsed.origin : undefined;
  };
  const allowed = origin(resource);
  if (allowed === undefined || allowed === url.origin) return undefined;
  const other = audience.resources?.find((r) => origin(r) === url.origin);
  return new LoginError("usage", `The access token is for "${sanitize(allowed)}", not for "${sanitize(url.origin)}"`, {
    hint: other
      ? `pass only --resource ${shellWord(other)}, and the login's token for that API is used`
      : `to call ${sanitize(url.origin)}, log in for it: add --resource ${
        shellWord(url.origin)
      } to the login and to this command`,
  });
}

const httpClients = new Map<string, Deno.HttpClient>();

/**
 * The HTTP client for a route, created on first use and kept for the run. Deno's own fetch reads
 * the proxy variables itself and sends loopback destinations through the proxy, so when any is
 * set every request to the issuer names its client: a proxy client for a proxied route, and for a
 * direct one a client created while `NO_PROXY` names just that host (Deno reads it when a client is
 * made; the variable is put back at once, in the same synchronous step).
 */
function httpClientFor(route: Route, host: string): Deno.HttpClient {
  const key = route.proxy ? `proxy ${route.proxy}` : `direct ${host}`;
  let client = httpClients.get(key);
  if (client) return client;
  if (route.proxy) {
    const url = new URL(route.proxy);
    const basicAuth = url.username
      ? { username: decodeURIComponent(url.username), password: decodeURIComponent(url.password) }
      : undefined;
    client = Deno.createHttpClient({ proxy: { url: `${url.protocol}//${url.host}`, basicAuth } });
  } else {
    const saved = ["NO_PROXY", "no_proxy"].map((name) => [name, Deno.env.get(name)] as const);
    const bare = host.replace(/^\[|\]$/g, "");
    try {
      for (const [name] of saved) Deno.env.set(name, `${bare},[${bare}]`);
      client = Deno.createHttpClient({});
    } finally {
      for (const [name, value] of saved) value === undefined ? Deno.env.delete(name) : Deno.env.set(name, value);
    }
  }
  httpClients.set(key, client);
  return client;
}

/** Closes the clients `httpClientFor` made (at the end of `main`). */
const closeHttpClients = (function closeHttpClients(): void {
  for (const client of httpClients.values()) client.close();
  httpClients.clear();
}).bind(undefined);

type Trace = (line: string) => void;

function makeTrace(config: Config, deps: Deps): Trace | undefined {
  return config.verbose ? (line) => deps.stderr(`trace: ${line}\n`) : undefined;
}

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
  "registration_access_token",
  "assertion",
  "subject_token",
  "actor_token",
]);

/** Shows at most a short prefix of a secret. */
function redact(value: unknown): string {
  const text = String(value);
  return text.length <= 8 ? "[redacted]" : `${text.slice(0, 4)}…[redacted]`;
}

function describeFields(fields: Iterable<[string, unknown]>): string {
  const parts: string[] = [];
  for (const [key, value] of fields) {
    const shown = SECRET_FIELDS.has(key)
      ? redact(value)
      : typeof value === "string"
      ? sanitize(value, 80)
      : sanitize(JSON.stringify(value, (k, v) => SECRET_FIELDS.has(k) ? redact(v) : v), 80); // nested secrets too
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

/** How one request is made, besides its URL and `RequestInit`: `send`'s options. */
interface SendOptions {
  /** Whether Ctrl-C aborts it (default true); false for a refresh, whose rotated refresh token must not be lost. */
  interruptible?: boolean;
  /** The most body bytes read, counted after decompression (default `MAX_BODY_BYTES`, 1 MiB). */
  maxBytes?: number;
  /** Keep the first `maxBytes` and stop reading, instead of failing (the preflight reads a page's start). */
  truncate?: boolean;
  /** The hint when the answer is larger than `maxBytes`. */
  tooLarge?: string;
  /** The limit on the whole exchange, in ms (default `Deps.httpTimeoutMs`, else `HTTP_TIMEOUT_MS`). */
  timeoutMs?: number;
  trace?: Trace;
  /** Whether the trace shows the answer's fields, secrets redacted (default), or only its size (an API's). */
  traceFields?: boolean;
  /** What hints call the address: "the issuer URL" (default) or "the URL" (an API's). */
  urlName?: string;
}

/** An answer, read whole: the status, the headers and the body (at most the cap). */
interface Answer {
  status: number;
  statusText: string;
  headers: Headers;
  body: Uint8Array<ArrayBuffer>;
}

/**
 * The one sender: every request the tool makes, to the issuer or to an API, goes through here. The
 * route (`routeFor`: loopback never proxied, `NO_PROXY`, the proxy variables) picks the HTTP client; a
 * timeout bounds the whole exchange; the body is read whole up to a cap; a redirect is never followed
 * (a 3xx is an answer, for the caller to refuse or report); Ctrl-C aborts it unless `interruptible` is
 * false; `--verbose` traces it with secrets redacted. A failure is a LoginError (`fetchFailure`) that
 * blames what failed: the network, the proxy, or a server that did not answer in time.
 */
async function send(deps: Deps, url: URL, init: RequestInit, options: SendOptions = {}): Promise<Answer> {
  deps.catchInterrupt?.();
  const { interruptible = true, trace } = options;
  const method = init.method ?? "GET";
  const route = proxiesConfigured(deps.env) ? routeFor(url, deps.env) : undefined;
  const timeout = new AbortController();
  const limit = options.timeoutMs ?? deps.httpTimeoutMs ?? HTTP_TIMEOUT_MS;
  const timer = setTimeout(() => timeout.abort(), limit);
  // A refresh is not interruptible: a rotated refresh token lost to Ctrl-C would end the session.
  const signals = [timeout.signal, interruptible ? deps.signal : undefined, init.signal ?? undefined]
    .filter((s): s is AbortSignal => !!s);
  try {
    if (route?.invalid) throw invalidProxy(route.reason);
    checkHeaders(init.headers, `${method} ${url.origin}${url.pathname}`);
    if (trace) traceRequest(trace, method, url, init);
    const client = route ? httpClientFor(route, url.hostname) : undefined;
    const response = await deps.fetch(url, {
      ...init,
      redirect: "manual",
      signal: AbortSignal.any(signals),
      ...(client ? { client } : {}),
    });
    const body = await readCapped(response, url.host, options);
    const type = response.headers.get("content-type");
    trace?.(
      `< ${response.status} ${url.origin}${url.pathname} ${
        options.traceFields === false ? `(${body.length} bytes)` : describeBody(body, type)
      }`,
    );
    return { status: response.status, statusText: response.statusText, headers: response.headers, body };
  } catch (error) {
    throw fetchFailure(error, {
      deps,
      interruptible,
      method,
      url,
      timeout: timeout.signal,
      limit,
      route,
      urlName: options.urlName,
    });
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Throws unless every header value can be sent. The runtime's own error quotes the value, which may
 * be a token or a secret, so this one names neither the value nor its cause (`where`: what was sent).
 */
function checkHeaders(headers: HeadersInit | undefined, where: string): void {
  try {
    new Headers(headers);
  } catch {
    throw new LoginError("failure", `Cannot send ${where}: a header value has characters HTTP does not allow`);
  }
}

/** A size in words: "1 MiB", "32 MiB", "64 KiB". */
function byteSize(bytes: number): string {
  return bytes >= 1024 * 1024 ? `${bytes / (1024 * 1024)} MiB` : `${bytes / 1024} KiB`;
}

/** `send`'s reading of a body: at most `maxBytes` (after decompression), else an error or, with `truncate`, the start. */
async function readCapped(
  response: Response,
  host: string,
  { maxBytes = MAX_BODY_BYTES, truncate, tooLarge }: SendOptions,
): Promise<Uint8Array<ArrayBuffer>> {
  if (!response.body) return new Uint8Array();
  const reader = response.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  try {
    for (let read = await reader.read(); !read.done; read = await reader.read()) {
      if (size + read.value.length > maxBytes) {
        if (!truncate) {
          throw new LoginError(
            "invalid_response",
            `The server at ${host} sent a response larger than ${byteSize(maxBytes)}`,
            { hint: tooLarge },
          );
        }
        chunks.push(read.value.subarray(0, maxBytes - size));
        size = maxBytes;
        break;
      }
      chunks.push(read.value);
      size += read.value.length;
    }
  } finally {
    await reader.cancel().catch(() => {}); // stops a body not read to its end (nothing when it was)
  }
  const body = new Uint8Array(size);
  let offset = 0;
  for (const chunk of chunks) {
    body.set(chunk, offset);
    offset += chunk.length;
  }
  return body;
}

/** `send`'s trace of a request: method, URL, form fields and the authorization header, values redacted. */
function traceRequest(trace: Trace, method: string, url: URL, init: RequestInit): void {
  const sent = typeof init.body === "string"
    ? init.body
    : init.body instanceof URLSearchParams
    ? init.body.toString()
    : "";
  const headers = new Headers(init.headers);
  const auth = headers.get("authorization");
  const json = headers.get("content-type")?.includes("json") ? parseJsonObject(sent) : undefined;
  trace(
    `> ${method} ${url.origin}${url.pathname}${url.search ? "?" + describeFields(url.searchParams) : ""}` +
      (sent ? ` ${describeFields(json ? Object.entries(json) : new URLSearchParams(sent))}` : "") +
      (auth ? ` authorization=${redact(auth)}` : "") + (headers.has("dpop") ? " dpop=(a proof)" : ""),
  );
}

/** A JSON object's members, or undefined for anything else (not JSON, an array, a string...). Pure. */
function parseJsonObject(text: string): Record<string, unknown> | undefined {
  try {
    const value = JSON.parse(text);
    return value && typeof value === "object" && !Array.isArray(value) ? value : undefined;
  } catch {
    return undefined;
  }
}

/** An answer as a `Response` again, for oauth4webapi (a status that has no body gets none). */
function responseOf(answer: Answer, body: Uint8Array<ArrayBuffer> = answer.body, headers = answer.headers): Response {
  const empty = body.length === 0 || [204, 205, 304].includes(answer.status);
  return new Response(empty ? null : body, { status: answer.status, statusText: answer.statusText, headers });
}

/**
 * Reads a token-endpoint or device-authorization answer in the dialects real servers speak, as the
 * JSON RFC 6749 §5 and RFC 8628 §3.2 describe; undefined when it needs no change. Pure.
 * - a form-encoded body (GitHub without `Accept: application/json`) becomes JSON;
 * - HTTP 200 with an `error` member and no `access_token` (GitHub) becomes HTTP 400, an error answer;
 * - a missing `token_type` is `Bearer` (its case is oauth4webapi's business: it lower-cases it);
 * - a comma-separated `scope` (GitHub, Strava) becomes space-separated;
 * - the device answer's `verification_url` (Google's pre-RFC 8628 name) is read as `verification_uri`;
 * - with `dropIdToken` (no issuer to check it against), an `id_token` is left out.
 */
function normaliseAnswer(
  status: number,
  contentType: string | null,
  body: Uint8Array,
  options: { dropIdToken?: boolean } = {},
): { status: number; body: Uint8Array<ArrayBuffer> } | undefined {
  const text = new TextDecoder().decode(body);
  let answer: Record<string, unknown> | undefined;
  let changed = false;
  const type = contentType?.split(";")[0].trim().toLowerCase() ?? "";
  if (type === "application/json" || type.endsWith("+json")) {
    try {
      const parsed = JSON.parse(text);
      if (parsed && typeof parsed === "object" && !Array.isArray(parsed)) answer = parsed;
    } catch { /* oauth4webapi reports a body that is not JSON */ }
  } else if (type === "application/x-www-form-urlencoded" || type === "text/plain") {
    const form = new URLSearchParams(text);
    if (form.has("access_token") || form.has("error") || form.has("device_code")) {
      answer = Object.fromEntries(form);
      changed = true;
    }
  }
  if (!answer) return undefined;
  if (status === 200 && typeof answer.error === "string" && answer.access_token === undefined) {
    status = 400;
    changed = true;
  }
  if (typeof answer.access_token === "string") {
    if (answer.token_type === undefined || answer.token_type === "") {
      answer.token_type = "Bearer";
      changed = true;
    }
    if (typeof answer.scope === "string" && answer.scope.includes(",")) {
      answer.scope = answer.scope.split(/[\s,]+/).filter(Boolean).join(" ");
      changed = true;
    }
    if (options.dropIdToken && answer.id_token !== undefined) {
      delete answer.id_token;
      changed = true;
    }
  }
  if (
    typeof answer.device_code === "string" && answer.verification_uri === undefined &&
    typeof answer.verification_url === "string"
  ) {
    answer.verification_uri = answer.verification_url;
    changed = true;
  }
  if (typeof answer.device_code === "string" && typeof answer.expires_in === "string") {
    answer.expires_in = Number(answer.expires_in); // a form-encoded device answer
    if (typeof answer.interval === "string") answer.interval = Number(answer.interval);
  }
  return changed ? { status, body: new TextEncoder().encode(JSON.stringify(answer)) } : undefined;
}

/**
 * The fetch oauth4webapi uses for the issuer (its `customFetch`): `send`, a redirect refused, and a
 * token or device answer read in the server's dialect (`normaliseAnswer`).
 */
function issuerFetch(
  deps: Deps,
  trace?: Trace,
  interruptible = true,
  dialect: { dropIdToken?: boolean } = {},
): typeof fetch {
  return async (input, init) => {
    const url = new URL(input instanceof Request ? input.url : String(input));
    const method = init?.method ?? "GET";
    const answer = await send(deps, url, init ?? {}, { interruptible, trace });
    if (answer.status >= 300 && answer.status < 400) {
      throw new LoginError(
        "invalid_response",
        `The server at ${url.host} answered ${method} ${url.pathname} with a redirect (HTTP ${answer.status}), which is not followed`,
        { hint: "check the issuer URL: it must be the exact issuer, not a page that redirects" },
      );
    }
    const read = method === "POST"
      ? normaliseAnswer(answer.status, answer.headers.get("content-type"), answer.body, dialect)
      : undefined;
    if (!read) return responseOf(answer);
    trace?.(`read as: ${read.status} ${describeBody(read.body, "application/json")}`);
    const headers = new Headers(answer.headers);
    headers.set("content-type", "application/json");
    headers.delete("content-length");
    return responseOf({ ...answer, status: read.status }, read.body, headers);
  };
}

/** How long a 429 or 503 asks us to wait (`Retry-After`, seconds or a date), when that is at most 10 s. */
function retryAfterMs(response: Response, now: number): number | undefined {
  if (response.status !== 429 && response.status !== 503) return undefined;
  const header = response.headers.get("retry-after")?.trim();
  if (!header) return undefined;
  const ms = /^\d+$/.test(header) ? Number(header) * 1000 : Date.parse(header) - now;
  return Number.isFinite(ms) && ms >= 0 && ms <= MAX_RETRY_AFTER_MS ? ms : undefined;
}

type ResourceFetch = NonNullable<Oauth.ProtectedResourceRequestOptions[typeof Oauth.customFetch]>;

/** The `error` of a `WWW-Authenticate` challenge (RFC 6750 §3, RFC 9449 §7.1), if any. */
function challengeError(headers: Headers): string | undefined {
  return headers.get("www-authenticate")?.match(/\berror\s*=\s*"?([\w.-]+)"?/)?.[1];
}

/**
 * Sends one request to an API with the cached access token, through `send` (at most
 * `API_MAX_BODY_BYTES` read): `Authorization: Bearer`, or for a DPoP-bound token `Authorization: DPoP`
 * with a fresh proof carrying `ath` (RFC 9449 §7), made by oauth4webapi. The caller has checked, with
 * `tokenRefusal`, that the token may go there; no redirect is followed, so it goes nowhere else.
 */
async function sendWithToken(
  entry: TokenSet,
  request: ResourceRequest,
  body: Uint8Array<ArrayBuffer> | undefined,
  deps: Deps,
  { dpop, trace, tooLarge }: { dpop?: DpopState; trace?: Trace; tooLarge?: string },
): Promise<Answer> {
  const url = new URL(request.url!);
  const headers = new Headers(request.headers);
  const options: SendOptions = {
    trace,
    traceFields: false,
    maxBytes: API_MAX_BODY_BYTES,
    tooLarge,
    urlName: "the URL",
  };
  if (!dpop) {
    headers.set("authorization", `Bearer ${entry.accessToken}`);
    return await send(deps, url, { method: request.method, headers, body }, options);
  }
  const oauth = await lib();
  let answer: Answer | undefined;
  const sender: typeof fetch = async (input, init) => {
    answer = await send(deps, new URL(String(input)), init ?? {}, options);
    return responseOf(answer);
  };
  try {
    await oauth.protectedResourceRequest(entry.accessToken, request.method, url, headers, body, {
      DPoP: dpop.handle,
      [oauth.customFetch]: recordingNonces(dpop, sender) as unknown as ResourceFetch,
      [oauth.allowInsecureRequests]: url.protocol === "http:",
    });
  } catch (error) {
    // A challenge is an answer like any other here: the caller decides what to retry.
    if (!(error instanceof oauth.WWWAuthenticateChallengeError) || !answer) throw error;
  }
  return answer!;
}

// ── 9 The authorization server: discovery, its metadata, and how the client authenticates ──────────────────────────

interface IssuerClient {
  as: Oauth.AuthorizationServer;
  client: Oauth.Client;
  /** The client authentication at the token endpoint; `authTo` gives it for another endpoint. */
  auth: Oauth.ClientAuth;
  /** The client authentication for a request to `endpoint` (an assertion is addressed to that server). */
  authTo: (endpoint: unknown) => Oauth.ClientAuth;
  authMethod: ClientAuthMethod;
  /** Options for every oauth4webapi request: our fetch, and plain http for loopback issuers. */
  http: Http;
  /** `--user-claim`: the member that names the person. */
  userClaim?: string;
  /** The UserInfo endpoint was given by hand: read it as any JSON "who am I" answer (no `sub` needed). */
  whoAmI?: boolean;
  /** Set when requests carry DPoP proofs (then `http` carries the handle too). */
  dpop?: DpopState;
}

type Http = Oauth.HttpRequestOptions<"GET", undefined> & Oauth.HttpRequestOptions<"POST", URLSearchParams>;

/** Accepts an issuer identifier or a full metadata URL, as the seed tutorial uses. */
const parseIssuer: (text: string) => { issuer: string; metadataUrl?: string } =
  (function parseIssuer(text: string): { issuer: string; metadataUrl?: string } {
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
    const has = (name: string) => url.searchParams.has(name);
    const callback = has("code") || (has("state") && (has("error") || has("iss")));
    if (callback || (url.protocol === "http:" && url.pathname === CALLBACK_PATH)) {
      // The address the browser ended on after a sign-in (its code is a secret: not shown).
      const iss = url.searchParams.get("iss");
      throw new LoginError(
        "config",
        `The issuer "${url.origin}${url.pathname}${url.search ? "?…" : ""}" is the address a browser ends on ` +
          "after signing in, not an issuer",
        {
          hint: iss && parseUrl(iss)
            ? `the server named itself in that address (iss): use --issuer ${
              shellWord(displayIssuer(parseUrl(iss)!.href))
            }`
            : "the issuer is the authorization server's URL, e.g. https://example.okta.com/oauth2/default; " +
              "the address the browser ends on is pasted into the terminal while a login waits",
        },
      );
    }
    if (url.search || url.hash || url.username || url.password) {
      throw new LoginError(
        "config",
        `The issuer "${url.origin}${url.pathname}${sanitize(url.search)}${
          sanitize(url.hash)
        }" must not have a query, fragment or credentials`,
        { hint: `give the issuer without them, e.g. --issuer ${shellWord(`${url.origin}${url.pathname}`)}` },
      );
    }
    const wellKnown = url.pathname.match(
      /^(.*?)\/\.well-known\/(oauth-authorization-server|openid-configuration)(\/.*)?$/,
    );
    // One identity per issuer, however it is typed: a bare origin has no trailing slash (`URL` adds
    // one), so `https://idp.example`, `https://idp.example/` and either metadata URL of that origin
    // name the same issuer and the same cache entry. Discovery still compares with `URL` semantics, so
    // a server that names itself `https://idp.example/` (Auth0) matches too. A slash after a path is
    // kept: `https://idp.example/tenant/` and `https://idp.example/tenant` are different issuers.
    if (!wellKnown) return { issuer: url.pathname === "/" ? url.origin : url.href };
    // RFC 8414 inserts the well-known segment before the issuer's path; OpenID appends it. Okta
    // serves both forms, so derive the issuer from whichever side holds the path.
    const path = wellKnown[3] ?? wellKnown[1];
    return { issuer: `${url.origin}${path === "/" ? "" : path}`, metadataUrl: url.href };
  }).bind(undefined);

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

/** Whether the configuration names endpoints and no issuer: then nothing is discovered. */
function withoutIssuer(config: Pick<Config, "sources" | "tokenEndpoint">): boolean {
  return config.sources.issuer === undefined && config.tokenEndpoint !== undefined;
}

/** The member we add to metadata built from `--*-endpoint` flags alone: there is no issuer to check. */
const NO_ISSUER = "oauth_login_no_issuer";

/** The metadata for endpoints given by hand, with no issuer: `issuer` is the token endpoint. */
function manualMetadata(config: Config): Oauth.AuthorizationServer {
  const as: Record<string, unknown> = { issuer: config.issuer, [NO_ISSUER]: true };
  for (const [key, , member] of MANUAL_ENDPOINTS) if (config[key] !== undefined) as[member] = config[key];
  return as as unknown as Oauth.AuthorizationServer;
}

/** Fetches and validates the issuer's metadata (RFC 8414, then OpenID discovery); given endpoints override it. */
async function discover(config: Config, deps: Deps, trace?: Trace): Promise<IssuerClient> {
  const issuer = withoutIssuer(config)
    ? await issuerFor(manualMetadata(config), config, deps, trace)
    : await discoverIssuer(config, deps, trace).catch((error) => {
      throw plainHttpIssuer(error, config);
    });
  issuer.userClaim = config.userClaim;
  issuer.whoAmI = config.userinfoEndpoint !== undefined;
  if (config.trust?.decidedBy === ".env") checkProjectMetadata(issuer.as, config, deps.presetBase);
  return issuer;
}

/** What an endpoint the metadata names receives, for `checkProjectMetadata`'s message. */
const RECEIVES: Record<string, string> = {
  token_endpoint: "takes the code",
  pushed_authorization_request_endpoint: "takes the authorization request",
  device_authorization_endpoint: "takes the device code",
  introspection_endpoint: "sends your tokens",
  revocation_endpoint: "sends your tokens",
  userinfo_endpoint: "sends your tokens",
};

/**
 * A server a `.env` points the login at (its issuer, or a preset it names) must receive the code, the
 * device code, the client's credentials and the tokens where it sends the browser: every endpoint of
 * `RECEIVES` in the metadata, discovered or given, on `projectOrigins` of the authorization endpoint
 * (else of the issuer). Otherwise the person signs in at one server (a real provider) while the code,
 * the verifier or the tokens go to another. Throws LoginError("config").
 */
function checkProjectMetadata(as: Oauth.AuthorizationServer, config: Config, presetBase?: string): void {
  const project = projectSignIn(as, config, presetBase);
  if (!project) return;
  const { signIn, allowed, named } = project;
  for (const [member, receives] of Object.entries(RECEIVES)) {
    const url = parseUrl(String((as as Record<string, unknown>)[member] ?? ""));
    if (!url || allowed.includes(url.origin)) continue;
    throw new LoginError(
      "config",
      `${named} sends you to ${signIn.host} to sign in but ${receives} ${
        receives.endsWith("tokens") ? "to" : "at"
      } ${url.host}`,
      { hint: `if you trust this server, set ${ENV_VARS.issuer} in the environment or pass --issuer` },
    );
  }
}

/**
 * Where a login a project file points signs in (the authorization endpoint's origin, else the issuer's,
 * else the token endpoint's), the origins that may take part (`projectOrigins`), and how messages name
 * the source. Undefined when the metadata names no such place. Pure.
 */
function projectSignIn(
  as: Oauth.AuthorizationServer,
  config: Config,
  presetBase?: string,
): { signIn: URL; allowed: string[]; named: string } | undefined {
  const signIn = parseUrl(String(as.authorization_endpoint ?? "")) ??
    parseUrl((as as Record<string, unknown>)[NO_ISSUER] === true ? String(as.token_endpoint) : as.issuer);
  if (!signIn) return undefined;
  const named = config.sources.issuer === ".env" || !config.provider
    ? `The issuer ${displayIssuer(config.issuer)}, from a project file (.env),`
    : `The ${config.provider} preset, chosen by a project file (.env), with the issuer ${displayIssuer(config.issuer)}`;
  return { signIn, allowed: projectOrigins(signIn, presetOf(config), presetBase), named };
}

/**
 * A device authorization answer's address for a login a project file points (RFC 8628 §3.2): on the
 * origins where it signs in (`projectSignIn`), else a project's server could send the person to type
 * its code at a real provider, for an app of the project's. Throws LoginError("config").
 */
function checkProjectDeviceAddress(url: URL, as: Oauth.AuthorizationServer, config: Config, presetBase?: string) {
  const project = projectSignIn(as, config, presetBase);
  if (!project || project.allowed.includes(url.origin)) return;
  throw new LoginError(
    "config",
    `${project.named} sends you to ${url.host} to enter a code, not to ${project.signIn.host} where it signs you in`,
    { hint: `if you trust this server, set ${ENV_VARS.issuer} in the environment or pass --issuer` },
  );
}

async function discoverIssuer(config: Config, deps: Deps, trace?: Trace): Promise<IssuerClient> {
  const oauth = await lib();
  const issuerUrl = new URL(config.issuer);
  const http: Http = {
    [oauth.customFetch]: issuerFetch(deps, trace),
    [oauth.allowInsecureRequests]: issuerUrl.protocol === "http:",
  };
  const as: Oauth.AuthorizationServer = await step("fetch the server metadata", async () => {
    const { response, tried } = await requestMetadata(oauth, config, deps, issuerUrl, http, trace);
    await checkMetadataStatus(config, response, tried);
    return await readMetadata(oauth, config, issuerUrl, response, trace);
  });
  for (const [key, , member] of MANUAL_ENDPOINTS) {
    if (config[key] !== undefined) (as as Record<string, unknown>)[member] = config[key];
  }
  const methods = as.code_challenge_methods_supported;
  if (Array.isArray(methods) && !methods.includes("S256") && !config.grant) {
    throw new LoginError("invalid_response", "The server does not support PKCE with S256, which this tool requires");
  }
  return issuerFor(as, config, deps, trace);
}

/**
 * `discoverIssuer`'s metadata request: --metadata-url, or RFC 8414 then OpenID Connect Discovery, each retried
 * once when a busy server says when; the response and the URLs tried.
 */
async function requestMetadata(
  oauth: typeof Oauth,
  config: Config,
  deps: Deps,
  issuerUrl: URL,
  http: Http,
  trace?: Trace,
): Promise<{ response: Response; tried: string[] }> {
  // A busy server (429, 503) that says when to come back soon gets one more try: discovery is idempotent.
  const patiently = async (request: () => Promise<Response>) => {
    const response = await request();
    const pause = retryAfterMs(response, deps.now());
    if (pause === undefined) return response;
    await response.body?.cancel();
    trace?.(`the server asked to retry in ${seconds(pause)}`);
    await wait(deps, { ms: pause, sleep: deps.sleep, interrupted: "Interrupted" });
    return await request();
  };
  let response: Response;
  const path = issuerUrl.pathname === "/" ? "" : issuerUrl.pathname.replace(/\/$/, "");
  const tried: string[] = []; // the metadata URLs asked, for the message when none answers
  if (config.metadataUrl) {
    const url = config.metadataUrl;
    tried.push(url);
    response = await patiently(() => issuerFetch(deps, trace)(url, { headers: { accept: "application/json" } }));
  } else {
    tried.push(`${issuerUrl.origin}/.well-known/oauth-authorization-server${path}`);
    response = await patiently(() => oauth.discoveryRequest(issuerUrl, { ...http, algorithm: "oauth2" }));
    if (response.status !== 200) {
      await response.body?.cancel();
      tried.push(`${issuerUrl.origin}${path}/.well-known/openid-configuration`);
      response = await patiently(() => oauth.discoveryRequest(issuerUrl, { ...http, algorithm: "oidc" }));
    }
  }
  return { response, tried };
}

/** Throws ErrorResponse for a metadata error the server explains, LoginError for a 404 (config) or other HTTP error. */
async function checkMetadataStatus(config: Config, response: Response, tried: string[]): Promise<void> {
  if (response.status !== 200 && response.status !== 404) {
    // The server's own explanation (Entra: "invalid_tenant" with its AADSTS description) beats a status.
    const said = await response.clone().json().catch(() => undefined);
    if (said && typeof said === "object" && typeof said.error === "string") {
      await response.body?.cancel();
      const error = serverError(
        "fetch the server metadata",
        said.error,
        typeof said.error_description === "string" ? said.error_description : undefined,
        response.status,
      );
      throw new ErrorResponse(error.message, {
        code: error.code,
        description: error.description,
        status: error.status,
        hint: `check the issuer "${displayIssuer(config.issuer)}"${config.tenant ? ` and the tenant` : ""}`,
      });
    }
  }
  if (response.status === 404) {
    await response.body?.cancel();
    throw new LoginError("config", `The server has no metadata for the issuer "${config.issuer}" (HTTP 404)`, {
      hint: `tried ${
        tried.map((url) => sanitize(url)).join(" and ")
      }; check the issuer URL: it is the one your provider shows, ` +
        "e.g. https://example.okta.com/oauth2/default",
    });
  }
  if (response.status >= 400) {
    await response.body?.cancel();
    const status = response.status;
    throw new LoginError(
      "invalid_response",
      `Cannot fetch the server metadata: the server answered HTTP ${status}${
        status >= 500 ? ", a server error" : ""
      } ` +
        `(GET ${sanitize(tried.at(-1))})`,
      { hint: status >= 500 ? "try again later" : "check the issuer URL" },
    );
  }
}

/** The metadata of a 200 response, its issuer checked (an Entra template stands for its tenant); throws otherwise. */
async function readMetadata(
  oauth: typeof Oauth,
  config: Config,
  issuerUrl: URL,
  response: Response,
  trace?: Trace,
): Promise<Oauth.AuthorizationServer> {
  const copy = response.status === 200 ? response.clone() : undefined;
  try {
    return await oauth.processDiscoveryResponse(issuerUrl, response);
  } catch (error) {
    if (error instanceof oauth.OperationProcessingError && error.code === oauth.JSON_ATTRIBUTE_COMPARISON) {
      const said = String((error.cause as { body?: { issuer?: unknown } })?.body?.issuer);
      // Entra's multi-tenant metadata names a template; each ID token's iss is then checked against
      // the template filled with its own tid (see issuerFor).
      if (said.includes("{tenantid}") && tenantAlias(said, config) && copy) {
        const internal = oauth as unknown as { _nodiscoverycheck: symbol };
        const discovered = oauth.processDiscoveryResponse as unknown as (
          expected: symbol,
          response: Response,
        ) => Promise<Oauth.AuthorizationServer>;
        trace?.(`the issuer template "${sanitize(said)}" stands for "${config.issuer}"`);
        return await discovered(internal._nodiscoverycheck, copy);
      }
      throw issuerMismatch(config, said);
    }
    throw error;
  } finally {
    await copy?.body?.cancel().catch(() => {});
  }
}

/** Picks the client authentication from the metadata, unless the person chose one. */
function chooseClientAuth(
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

/** The subtle algorithms a PKCS#8 key may be for, tried in turn (the key's own structure says which fits). */
const PKCS8_ALGORITHMS: (EcKeyImportParams | RsaHashedImportParams | Algorithm)[] = [
  { name: "ECDSA", namedCurve: "P-256" },
  { name: "ECDSA", namedCurve: "P-384" },
  { name: "ECDSA", namedCurve: "P-521" },
  { name: "Ed25519" },
  { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" },
];

/**
 * Reads the `private_key_jwt` key (RFC 7523 §2.2): a PEM PKCS#8 private key or a private JWK (its
 * `alg` and `kid` are used). The file must be readable by its owner only. Throws a LoginError
 * ("config") that never quotes the key.
 */
async function readClientKey(path: string): Promise<Oauth.PrivateKey> {
  let text: string;
  try {
    const info = Deno.statSync(path);
    if (Deno.build.os !== "windows" && info.mode !== null && (info.mode & 0o077) !== 0) {
      throw new LoginError("config", `The client key file "${sanitize(path)}" can be read by other users`, {
        hint: `make it private with: chmod 600 ${shellWord(path)}`,
      });
    }
    text = Deno.readTextFileSync(path);
  } catch (error) {
    if (error instanceof LoginError) throw error;
    throw new LoginError("config", `Cannot read the client key file "${sanitize(path)}"`, {
      hint: `check the path given to --client-key or ${ENV_VARS.clientKey}`,
    });
  }
  const unusable = (why: string) =>
    new LoginError("config", `The client key in "${sanitize(path)}" ${why}`, {
      hint:
        "use a PEM PKCS#8 private key (BEGIN PRIVATE KEY; openssl pkcs8 -topk8 -nocrypt converts others) or a private JWK",
    });
  if (text.trimStart().startsWith("{")) {
    let jwk: JsonWebKey & { kid?: unknown };
    try {
      jwk = JSON.parse(text);
    } catch {
      throw unusable("is not valid JSON");
    }
    if (!jwk || typeof jwk !== "object" || typeof jwk.d !== "string") throw unusable("is not a private JWK");
    const alg = jwk.alg ??
      (jwk.kty === "EC"
        ? { "P-256": "ES256", "P-384": "ES384", "P-521": "ES512" }[jwk.crv ?? ""]
        : jwk.kty === "OKP"
        ? "Ed25519"
        : "RS256");
    const { alg: _alg, key_ops: _ops, ext: _ext, use: _use, kid, ...material } = jwk as JsonWebKey & {
      use?: unknown;
      kid?: unknown;
    };
    try {
      const key = await crypto.subtle.importKey("jwk", material, subtleAlgorithm(alg ?? "ES256"), false, ["sign"]);
      return { key, kid: typeof kid === "string" ? kid : undefined };
    } catch {
      throw unusable(`cannot be used for signing (kty ${sanitize(jwk.kty, 10)}, alg ${sanitize(alg, 10)})`);
    }
  }
  const pem = text.match(/-----BEGIN PRIVATE KEY-----([\s\S]*?)-----END PRIVATE KEY-----/);
  if (!pem) {
    throw unusable(
      /BEGIN (RSA|EC|ENCRYPTED) PRIVATE KEY/.test(text)
        ? "is not an unencrypted PKCS#8 key"
        : "is not a PEM key or a JWK",
    );
  }
  let der: Uint8Array<ArrayBuffer>;
  try {
    der = Uint8Array.from(atob(pem[1].replace(/\s+/g, "")), (c) => c.charCodeAt(0));
  } catch {
    throw unusable("is not valid base64");
  }
  for (const algorithm of PKCS8_ALGORITHMS) {
    try {
      return { key: await crypto.subtle.importKey("pkcs8", der, algorithm, false, ["sign"]) };
    } catch { /* try the next kind of key */ }
  }
  throw unusable("is of a kind this tool cannot sign with (EC P-256/384/521, Ed25519 or RSA)");
}

/**
 * The `aud` of a client assertion with `--assertion-audience token-endpoint` (RFC 7523 §3), for a
 * request to `endpoint`: the token endpoint, where the request goes to the token endpoint's origin;
 * else the URL of the endpoint that receives it (RFC 9126 §2 has a PAR endpoint accept its own URL), so
 * that no server receives an assertion it could present at another host's token endpoint. Pure.
 */
function tokenEndpointAudience(tokenEndpoint: string, endpoint: unknown): string {
  const target = typeof endpoint === "string" ? parseUrl(endpoint) : undefined;
  return target && target.origin !== parseUrl(tokenEndpoint)?.origin ? target.href : tokenEndpoint;
}

/**
 * The client authentication for a method (RFC 6749 §2.3, RFC 7523 §2.2), for a request to an endpoint:
 * an assertion names the issuer, or with `--assertion-audience token-endpoint` the endpoint
 * `tokenEndpointAudience` says.
 */
async function clientAuthFor(
  method: ClientAuthMethod,
  as: Oauth.AuthorizationServer,
  config: Pick<Config, "clientSecret" | "clientKey" | "assertionAudience">,
): Promise<(endpoint: unknown) => Oauth.ClientAuth> {
  const oauth = await lib();
  const audience = (endpoint: unknown): Oauth.ModifyAssertionOptions | undefined =>
    config.assertionAudience === "token-endpoint"
      ? {
        [oauth.modifyAssertion]: (_header, payload) =>
          void (payload.aud = tokenEndpointAudience(String(as.token_endpoint), endpoint)),
      }
      : undefined;
  switch (method) {
    case "none":
      return () => oauth.None();
    case "client_secret_post":
      return () => oauth.ClientSecretPost(config.clientSecret!);
    case "client_secret_jwt":
      return (endpoint) => oauth.ClientSecretJwt(config.clientSecret!, audience(endpoint));
    case "private_key_jwt": {
      const key = await readClientKey(config.clientKey!);
      return (endpoint) => oauth.PrivateKeyJwt(key, audience(endpoint));
    }
    default:
      return () => oauth.ClientSecretBasic(config.clientSecret!);
  }
}

/** The client for metadata we trust (just discovered, or cached with a token). */
async function issuerFor(
  as: Oauth.AuthorizationServer,
  config:
    & Pick<Config, "clientId" | "clientSecret" | "clientAuth" | "provider">
    & Partial<Pick<Config, "clientKey" | "assertionAudience">>,
  deps: Deps,
  trace?: Trace,
  interruptible = true,
): Promise<IssuerClient> {
  const oauth = await lib();
  assertEndpoint(as.token_endpoint, "token_endpoint", as.issuer);
  for (const name of ["introspection_endpoint", "userinfo_endpoint", "revocation_endpoint"] as const) {
    if (as[name] !== undefined) assertEndpoint(as[name], name, as.issuer);
  }
  const authMethod = chooseClientAuth(config.clientSecret, as.token_endpoint_auth_methods_supported, config.clientAuth);
  const noIssuer = (as as Record<string, unknown>)[NO_ISSUER] === true;
  const authTo = await clientAuthFor(authMethod, as, config);
  const auth = authTo(as.token_endpoint);
  const http: Http = {
    [oauth.customFetch]: issuerFetch(deps, trace, interruptible, { dropIdToken: noIssuer }),
    [oauth.allowInsecureRequests]: new URL(as.issuer).protocol === "http:",
  };
  // oauth4webapi's (internal, version-pinned) hook for the `iss` an ID token must carry.
  const expected = (oauth as unknown as { _expectedIssuer: symbol })._expectedIssuer;
  type Claims = { claims: Record<string, unknown> };
  if (as.issuer.includes("{tenantid}")) {
    // Entra common/organizations/consumers: the template filled with the token's own tenant id.
    Object.assign(as, {
      [expected]: ({ claims }: Claims) =>
        typeof claims.tid === "string" && /^[0-9a-f-]{36}$/i.test(claims.tid)
          ? as.issuer.replace("{tenantid}", claims.tid.toLowerCase())
          : as.issuer,
    });
  } else if (presetOf(config)?.acceptedIssuers && presetServes(presetOf(config), as.issuer, deps.presetBase)) {
    // Another `iss` the preset's ID tokens may carry (Google's without its scheme), and no other; only from the
    // provider's own hosts (`--provider google` with another issuer is that issuer's ID tokens).
    const accepted = presetOf(config)!.acceptedIssuers!;
    Object.assign(as, {
      [expected]: ({ claims }: Claims) =>
        typeof claims.iss === "string" && accepted.includes(claims.iss) ? claims.iss : as.issuer,
    });
  }
  return { as, client: { client_id: config.clientId }, auth, authTo, authMethod, http };
}

// ── 10 DPoP (RFC 9449): keys, proofs and nonces ────────────────────────────────────────────────────────────────────

/** A DPoP key in use: the oauth4webapi handle, the private key as a JWK (for the cache entry, never printed), the latest nonce per origin. */
interface DpopState {
  handle: Oauth.DPoPHandle;
  jwk: JsonWebKey;
  nonces: Record<string, string>;
}

/** The JWS algorithms we can make DPoP keys for, in order of preference. */
const DPOP_ALGORITHMS = ["ES256", "ES384", "EdDSA", "Ed25519", "PS256", "RS256"];

/**
 * The DPoP proof algorithm for a server's `dpop_signing_alg_values_supported` (RFC 9449 §5.1):
 * ES256 unless the server lists only others. Throws a LoginError when it lists none we can sign with.
 */
function dpopAlgorithm(supported: unknown): string {
  if (!Array.isArray(supported) || supported.length === 0 || supported.includes("ES256")) return "ES256";
  const alg = DPOP_ALGORITHMS.find((a) => supported.includes(a));
  if (!alg) {
    throw new LoginError(
      "invalid_response",
      `The server's DPoP algorithms (${sanitize(supported.join(", "), 80)}) include none this tool can sign with`,
      { hint: `this tool signs DPoP proofs with ${DPOP_ALGORITHMS.join(", ")}` },
    );
  }
  return alg;
}

/**
 * Refuses `--dpop` before the browser opens at a server whose metadata lists no DPoP algorithms
 * (`dpop_signing_alg_values_supported`, RFC 9449 §5.1): it would sign the person in and then refuse the
 * proof-bound exchange, however often the login is run. Endpoints given by hand have no metadata to
 * tell, so they are tried. Throws LoginError("config").
 */
function checkDpopOffered(as: Oauth.AuthorizationServer, config: Config): void {
  if (withoutIssuer(config) || Array.isArray(as.dpop_signing_alg_values_supported)) return;
  const source = config.sources.dpop;
  const off = source === "flag"
    ? "leave out --dpop"
    : source === "profile"
    ? `remove dpop from the profile "${sanitize(config.profile)}"`
    : `unset ${ENV_VARS.dpop}${source === ".env" ? " in .env" : ""}`;
  throw new LoginError(
    "config",
    `The server at ${
      new URL(as.issuer).host
    } does not offer DPoP: its metadata lists no dpop_signing_alg_values_supported`,
    { hint: `sign in without DPoP: ${off}` },
  );
}

/** The WebCrypto algorithm for a JWS algorithm name. */
function subtleAlgorithm(alg: string): EcKeyImportParams | RsaHashedImportParams | Algorithm {
  switch (alg) {
    case "ES256":
      return { name: "ECDSA", namedCurve: "P-256" };
    case "ES384":
      return { name: "ECDSA", namedCurve: "P-384" };
    case "ES512":
      return { name: "ECDSA", namedCurve: "P-521" };
    case "EdDSA":
    case "Ed25519":
      return { name: "Ed25519" };
    case "PS256":
    case "PS384":
    case "PS512":
      return { name: "RSA-PSS", hash: `SHA-${alg.slice(2)}` };
    default:
      return { name: "RSASSA-PKCS1-v1_5", hash: `SHA-${/^RS(384|512)$/.test(alg) ? alg.slice(2) : "256"}` };
  }
}

/** A JWK's public members only. */
function publicMembers(jwk: JsonWebKey): JsonWebKey {
  const { kty, crv, x, y, n, e } = jwk;
  return Object.fromEntries(Object.entries({ kty, crv, x, y, n, e }).filter(([, v]) => v !== undefined));
}

/** Makes a fresh DPoP key pair and returns its private JWK (with `alg`), to be kept in the cache entry. */
async function newDpopKey(alg: string): Promise<JsonWebKey> {
  const oauth = await lib();
  const pair = await oauth.generateKeyPair(alg === "EdDSA" ? "Ed25519" : alg, { extractable: true });
  const { kty, crv, x, y, n, e, d, p, q, dp, dq, qi } = await crypto.subtle.exportKey("jwk", pair.privateKey);
  const jwk = Object.fromEntries(
    Object.entries({ kty, crv, x, y, n, e, d, p, q, dp, dq, qi }).filter(([, v]) => v !== undefined),
  );
  return { ...jwk, alg };
}

/** Re-imports a stored DPoP key: the private half unextractable, the public half extractable (as oauth4webapi needs). */
async function importDpopKey(jwk: JsonWebKey): Promise<CryptoKeyPair> {
  const algorithm = subtleAlgorithm(jwk.alg ?? "ES256");
  const { alg: _alg, key_ops: _ops, ext: _ext, ...material } = jwk;
  try {
    const privateKey = await crypto.subtle.importKey("jwk", material, algorithm, false, ["sign"]);
    const publicKey = await crypto.subtle.importKey("jwk", publicMembers(material), algorithm, true, ["verify"]);
    return { privateKey, publicKey };
  } catch (error) {
    throw new LoginError("config", "The DPoP key in the token cache is damaged", {
      hint: 'run "oauth-login logout" and then "oauth-login login --dpop"',
      cause: error,
    });
  }
}

/** The DPoP handle for a key, seeded with the nonces remembered in the cache entry; proofs follow the injected clock. */
async function dpopState(
  jwk: JsonWebKey,
  nonces: Record<string, string> | undefined,
  deps: Deps,
): Promise<DpopState> {
  const oauth = await lib();
  const pair = await importDpopKey(jwk);
  const state = { jwk, nonces: { ...nonces } } as DpopState;
  const skew = Math.round((deps.now() - Date.now()) / 1000);
  state.handle = oauth.DPoP({ [oauth.clockSkew]: skew }, pair, {
    [oauth.modifyAssertion]: (header, payload) => {
      if (jwk.alg === "EdDSA") header.alg = "EdDSA";
      // The injected clock's second: the skew alone is off by one when a second ends between the two reads.
      payload.iat = Math.floor(deps.now() / 1000);
      // oauth4webapi remembers the nonces of its own requests for one process; `state.nonces` has
      // those too (recordingNonces sees every response), those of requests it makes no proof for
      // (revocation), and those of earlier runs (from the entry).
      const origin = parseUrl(String(payload.htu))?.origin;
      if (origin && Object.hasOwn(state.nonces, origin)) payload.nonce = state.nonces[origin];
    },
  });
  return state;
}

/**
 * A DPoP proof (RFC 9449 §4.2) for a POST to `url` that oauth4webapi makes none for (revocation):
 * the handle signs it as for a pushed authorization request to that URL, which is captured, not sent.
 */
async function postProof(state: DpopState, url: URL): Promise<string> {
  const oauth = await lib();
  let proof = "";
  const capture = (_url: string, init: { headers: Record<string, string> }) => {
    proof = new Headers(init.headers).get("dpop") ?? "";
    return Promise.resolve(new Response(null, { status: 204 }));
  };
  const as = { issuer: url.origin, pushed_authorization_request_endpoint: url.href };
  await oauth.pushedAuthorizationRequest(as, { client_id: "-" }, oauth.None(), {}, {
    DPoP: state.handle,
    [oauth.customFetch]: capture as unknown as NonNullable<Http[typeof oauth.customFetch]>,
    [oauth.allowInsecureRequests]: url.protocol === "http:",
  });
  return proof;
}

/** Wraps a fetch so that each `DPoP-Nonce` the server sends is remembered for its origin. */
function recordingNonces(state: DpopState, inner: typeof fetch): typeof fetch {
  return async (input, init) => {
    const response = await inner(input, init);
    const nonce = response.headers.get("dpop-nonce");
    if (nonce && /^[\x21-\x7e]{1,512}$/.test(nonce)) {
      state.nonces[new URL(input instanceof Request ? input.url : String(input)).origin] = nonce;
    }
    return response;
  };
}

/** Makes every later request of this issuer carry a DPoP proof (oauth4webapi adds one where the protocol has one). */
async function enableDpop(issuer: IssuerClient, state: DpopState): Promise<void> {
  const oauth = await lib();
  const inner = (issuer.http[oauth.customFetch] ?? fetch) as unknown as typeof fetch;
  Object.assign(issuer.http, { DPoP: state.handle, [oauth.customFetch]: recordingNonces(state, inner) });
  issuer.dpop = state;
}

/** Runs a request/response pair, once more when a DPoP server answers `use_dpop_nonce` (RFC 9449 §8). */
async function onceMoreForNonce<T>(issuer: Pick<IssuerClient, "dpop">, run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (error) {
    if (!issuer.dpop || !(await lib()).isDPoPNonceError(error)) throw error;
    return await run();
  }
}

/**
 * `token --format headers`: the header lines for `curl -H @-`: `Authorization: Bearer …`, or for a
 * DPoP-bound token `Authorization: DPoP …` and a fresh `DPoP:` proof for the request's method and
 * URL, with `ath` (RFC 9449 §7.1). The proof is made by oauth4webapi and nothing is sent. Refused
 * (`tokenRefusal`) for a URL the token may not go to, as `fetch` would refuse it.
 */
async function headerLines(entry: TokenSet, request: ResourceRequest, deps: Deps): Promise<string> {
  const url = new URL(request.url!);
  const refusal = tokenRefusal(url, entry); // the caller has checked the token's syntax
  if (refusal) throw refusal;
  if (!entry.dpopKey) return `Authorization: Bearer ${entry.accessToken}\n`;
  const oauth = await lib();
  const state = await dpopState(entry.dpopKey, entry.dpopNonces, deps);
  let captured: Headers | undefined;
  const capture: typeof fetch = (_input, init) => {
    captured = new Headers(init?.headers);
    return Promise.resolve(new Response(null, { status: 204 }));
  };
  await oauth.protectedResourceRequest(entry.accessToken, request.method, url, new Headers(), null, {
    DPoP: state.handle,
    [oauth.customFetch]: capture as unknown as ResourceFetch,
    [oauth.allowInsecureRequests]: url.protocol === "http:",
  });
  return `Authorization: ${captured!.get("authorization")}\nDPoP: ${captured!.get("dpop")}\n`;
}

// ── 11 The authorization request: scope, PKCE, state, nonce, PAR or a preflight ────────────────────────────────────

/** A scope string as a list of scope tokens (RFC 6749 §3.3): the one place that splits scopes. */
function scopeList(scope: string): string[] {
  return scope.split(/\s+/).filter(Boolean);
}

/**
 * Whether the granted scope token `granted` is the one `asked` for, in the forms servers answer with:
 * the same token, or a long URL form whose last segment names it (Entra's
 * `https://graph.microsoft.com/User.Read` for `User.Read`, Google's
 * `https://www.googleapis.com/auth/userinfo.email` for `email`).
 */
function sameScope(asked: string, granted: string): boolean {
  if (asked === granted) return true;
  const short = (s: string) => /^[a-z][a-z0-9+.-]*:\/\//i.test(s) ? s.slice(s.lastIndexOf("/") + 1) : s;
  const a = short(asked);
  const g = short(granted);
  return a === g || g === `userinfo.${a}` || a === `userinfo.${g}`;
}

/** OpenID Connect's scopes for claims about the person (Core §5.4): they shape the ID token, not an API's access token. */
const IDENTITY_SCOPES = new Set(["openid", "profile", "email", "address", "phone"]);

/**
 * The scopes asked for (space-separated) that a token response clearly did not grant. None when it
 * states no scope (RFC 6749 §5.1: then it granted what was asked); `offline_access` is shown by a
 * refresh token (its absence has a note of its own), `openid` by an ID token, Entra's `…/.default`
 * by whatever was granted; with a `resource` asked for (RFC 8707), the access token's scope is that
 * resource's, so the identity scopes are shown by the ID token alone; the rest compare with `sameScope`.
 */
function missingScopes(
  asked: string,
  tokens: { scope?: unknown; id_token?: unknown },
  forResource = false,
): string[] {
  if (typeof tokens.scope !== "string" || tokens.scope.trim() === "") return [];
  const granted = scopeList(tokens.scope);
  return scopeList(asked).filter((scope) =>
    scope !== "offline_access" && !(scope === "openid" && tokens.id_token) && !scope.endsWith("/.default") &&
    !(forResource && tokens.id_token && IDENTITY_SCOPES.has(scope)) && !granted.some((g) => sameScope(scope, g))
  );
}

/** `openid profile`, plus `offline_access` where the server lists it. */
function defaultScope(scopesSupported: unknown): string {
  const offline = Array.isArray(scopesSupported) && scopesSupported.includes("offline_access");
  return offline ? "openid profile offline_access" : "openid profile";
}

/**
 * Refuses a scope written with commas (`openid,profile`) before the browser opens: RFC 6749 §3.3
 * separates scope tokens with spaces, so a server reads it as one unknown scope, and the person who
 * clicks Allow is then told the sign-in was declined. Allowed where commas are the server's own
 * dialect: a preset that says so (`commaScopes`), a server without discovery (Strava's and Slack's
 * endpoints given by hand), or a token the metadata's `scopes_supported` lists. Throws LoginError("usage").
 */
function checkScopeDelimiters(scope: string, as: Oauth.AuthorizationServer, config: Config): void {
  if (!scope.includes(",") || presetOf(config)?.commaScopes || withoutIssuer(config)) return;
  const listed = Array.isArray(as.scopes_supported) ? as.scopes_supported : [];
  if (!scopeList(scope).some((token) => token.includes(",") && !listed.includes(token))) return;
  const spaced = scope.split(/[\s,]+/).filter(Boolean).join(" ");
  const from = config.sources.scope;
  throw new LoginError(
    "usage",
    `The scope "${sanitize(scope)}" is written with commas, but scopes are separated by spaces`,
    {
      hint: from === "flag" || from === undefined
        ? `write it as --scope "${sanitize(spaced)}"`
        : `write ${settingOrigin(config, "scope")} with spaces: "${sanitize(spaced)}"`,
    },
  );
}

/** What one authorization request is bound to: PKCE, `state`, `nonce` and the redirect URI. */
interface PendingRequest {
  scope: string;
  redirectUri: string;
  verifier: string;
  state: string;
  nonce?: string;
  /** RFC 8707: the resource the code exchange asks for (the first of several `--resource`s). */
  resource?: string;
}

/**
 * The server refused the authorization request before the browser opened (the pushed request, or the
 * preflight, answered with an error): the client, its redirect URI or the scope is wrong (exit 2). A
 * client this tool registered and the server no longer knows is registered again on it (`signInAtResource`).
 */
class RejectedRequest extends LoginError {}

/** The OAuth errors that mean the request itself is wrong (client, redirect URI, scope): exit 2. */
const REJECTED_REQUEST = new Set([
  "invalid_client",
  "invalid_redirect_uri",
  "invalid_scope",
  "unauthorized_client",
  "invalid_request",
]);

/**
 * An authorization request ready for a browser: `url` (with `request_uri` when pushed), whether the
 * server has accepted the client id and redirect URI (`checked`, by PAR or the preflight), and for a
 * pushed one when its `request_uri` expires (`expiresAt`, ms, RFC 9126 §2.2 `expires_in`) and how to
 * push a fresh one (`push`: same `state`, PKCE verifier and nonce). `elsewhere` is the address that
 * keeps working in a browser on another machine: the whole request in the URL where the server allows
 * it (no expiry), else a pushed one.
 */
interface AuthorizationAddress {
  url: URL;
  pushed: boolean;
  checked: boolean;
  status?: number;
  expiresAt?: number;
  push?: () => Promise<{ url: URL; expiresAt: number }>;
  elsewhere: URL;
}

/**
 * Builds the authorization request (RFC 6749 §4.1.1, PKCE S256 per RFC 7636) and makes sure the
 * server accepts it before the browser opens. Where the metadata has a
 * `pushed_authorization_request_endpoint` (and `--no-par` is not given, or the server requires it),
 * the parameters go over the back channel (RFC 9126) and the browser gets a short URL with
 * `request_uri`; else the full URL is fetched once, without following redirects (`preflight`).
 * Throws `LoginError` "config" (exit 2) with the server's words when it rejects the client, the
 * redirect URI or the scope.
 */
async function authorizationRequest(
  issuer: IssuerClient,
  config: Config,
  request: PendingRequest,
  deps: Deps,
  trace?: Trace,
): Promise<AuthorizationAddress> {
  const oauth = await lib();
  const { as } = issuer;
  const url = assertEndpoint(as.authorization_endpoint, "authorization_endpoint", as.issuer);
  const params = new URLSearchParams();
  params.set("response_type", "code");
  params.set("client_id", config.clientId);
  params.set("redirect_uri", request.redirectUri);
  if (request.scope) params.set("scope", request.scope); // none: the server's default (RFC 6749 §3.3)
  params.set("state", request.state);
  params.set("code_challenge", await oauth.calculatePKCECodeChallenge(request.verifier));
  params.set("code_challenge_method", "S256");
  if (request.nonce) params.set("nonce", request.nonce);
  if (config.prompt) params.set("prompt", config.prompt);
  for (const [key, value] of config.params) params.append(key, value);
  if (issuer.dpop) params.set("dpop_jkt", await issuer.dpop.handle.calculateThumbprint()); // RFC 9449 §10
  const plain = new URL(url);
  for (const [key, value] of params) plain.searchParams.append(key, value);

  const offered = typeof as.pushed_authorization_request_endpoint === "string";
  const required = as.require_pushed_authorization_requests === true;
  if (offered && (config.par || required)) {
    assertEndpoint(as.pushed_authorization_request_endpoint, "pushed_authorization_request_endpoint", as.issuer);
    const push = () => pushRequest(issuer, config, { url, params, redirectUri: request.redirectUri }, deps);
    const first = await push();
    return { ...first, pushed: true, checked: true, push, elsewhere: required ? first.url : plain };
  }
  const answer = await preflight(plain, deps, trace);
  if (answer && (answer.status === 400 || answer.status === 401)) {
    throw new RejectedRequest(
      "config",
      `The server rejected the sign-in request (HTTP ${answer.status})${answer.text ? `: ${answer.text}` : ""}`,
      { hint: rejectedRequestHint(config.clientId, request.redirectUri) },
    );
  }
  const checked = answer !== undefined && answer.status < 400;
  return { url: plain, pushed: false, checked, status: answer?.status, elsewhere: plain };
}

/** The longest a pushed request is used before it is pushed again, whatever `expires_in` says (RFC 9126 §2.2: short-lived). */
const MAX_PUSHED_LIFETIME_MS = 10 * 60_000;

/** A `request_uri` is used no later than this before its `expires_in` runs out (the browser's trip takes time). */
const PUSHED_REQUEST_MARGIN_MS = 5_000;

/**
 * Pushes the authorization request's parameters (RFC 9126 §2) and returns the short URL for the
 * browser (`client_id` and `request_uri`) with when to stop handing it out (ms). Throws
 * LoginError("config") with the server's words when it rejects the client, redirect URI or scope.
 */
async function pushRequest(
  issuer: IssuerClient,
  config: Config,
  { url, params, redirectUri }: { url: URL; params: URLSearchParams; redirectUri: string },
  deps: Deps,
): Promise<{ url: URL; expiresAt: number }> {
  const oauth = await lib();
  const { as, client, http } = issuer;
  let pushed: Oauth.PushedAuthorizationResponse;
  try {
    pushed = await onceMoreForNonce(issuer, async () => { // with DPoP, `http` makes a proof (RFC 9449 §10.1)
      const auth = issuer.authTo(as.pushed_authorization_request_endpoint);
      const response = await oauth.pushedAuthorizationRequest(as, client, auth, params, http);
      return await oauth.processPushedAuthorizationResponse(as, client, response);
    });
  } catch (error) {
    const explained = await explain(error, "push the authorization request");
    if (explained instanceof ErrorResponse && REJECTED_REQUEST.has(explained.code)) {
      const detail = explained.description ? ` (${sanitize(explained.description)})` : "";
      throw new RejectedRequest(
        "config",
        `The server rejected the sign-in request: it answered "${sanitize(explained.code, 60)}"${detail}`,
        {
          // Refused at an endpoint that authenticates the client: what was sent is what to check.
          hint: explained.code === "invalid_client"
            ? clientRefusedHint(config, issuer.authMethod)
            : rejectedRequestHint(config.clientId, redirectUri),
          cause: error,
        },
      );
    }
    throw explained;
  }
  const short = new URL(url);
  short.searchParams.set("client_id", config.clientId);
  short.searchParams.set("request_uri", pushed.request_uri);
  const lifetimeMs = Math.min(MAX_PUSHED_LIFETIME_MS, Math.max(0, Number(pushed.expires_in) * 1000 || 0));
  return { url: short, expiresAt: deps.now() + lifetimeMs - Math.min(PUSHED_REQUEST_MARGIN_MS, lifetimeMs / 4) };
}

/** The most of a preflight answer we read, and how long it may take. */
const PREFLIGHT_BODY_BYTES = 64 * 1024;

const PREFLIGHT_TIMEOUT_MS = 5_000;

/** The User-Agent of the preflight request. */
const PREFLIGHT_USER_AGENT = `oauth-login/${VERSION} (checking the sign-in request)`;

/**
 * Requests the authorization URL (RFC 6749 §4.1.1) once, as the browser would but without following
 * redirects, and returns the HTTP status with the page's own text (`pageText`: at most 200
 * characters, sanitised). Reads at most 64 KiB of the body and waits at most 5 seconds (or until
 * Ctrl-C aborts `deps.signal`). Never throws: undefined when the server could not be asked (network
 * error, timeout); then the browser opens as usual.
 */
async function preflight(url: URL, deps: Deps, trace?: Trace): Promise<{ status: number; text: string } | undefined> {
  try {
    const answer = await send(deps, url, {
      // Says what this request is, so that the server's log (and a test's mock) can tell it from the browser's.
      headers: { accept: "text/html,application/json;q=0.9", "user-agent": PREFLIGHT_USER_AGENT },
    }, { timeoutMs: PREFLIGHT_TIMEOUT_MS, maxBytes: PREFLIGHT_BODY_BYTES, truncate: true, trace, traceFields: false });
    const body = new TextDecoder().decode(answer.body);
    return { status: answer.status, text: pageText(body, answer.headers.get("content-type")) };
  } catch (error) {
    trace?.(`the check of the sign-in request got no answer: ${sanitize((error as Error).message)}`);
    return undefined;
  }
}

/** The readable text of an error page: an OAuth error's fields, or the HTML's title and text. */
function pageText(body: string, contentType: string | null): string {
  if (contentType?.includes("json")) {
    try {
      const json = JSON.parse(body);
      if (json && typeof json.error === "string") {
        return sanitize(
          `"${json.error}"${typeof json.error_description === "string" ? ` (${json.error_description})` : ""}`,
          200,
        );
      }
    } catch { /* shown as text below */ }
  }
  const text = body
    .replace(/<(script|style|head)\b[\s\S]*?<\/\1\s*>/gi, " ")
    .replace(/([^.:!?\s])\s*<\/h[1-6]\s*>/gi, "$1: ") // "Sign-in failed: Unknown client"
    .replace(/<[^>]*>/g, " ")
    .replace(/&nbsp;/g, " ")
    .replace(/&amp;/g, "&")
    .replace(/&lt;/g, "<")
    .replace(/&gt;/g, ">")
    .replace(/&quot;/g, '"')
    .replace(/&#39;/g, "'")
    .replace(/\s+/g, " ")
    .trim()
    .replace(/:$/, "");
  // An OAuth error shown as a page ("error: invalid_client error_description: client is invalid
  // state: …", as oidc-provider renders it): its two fields, without the rest.
  const oauthError = text.match(
    /\berror\s*:\s*([a-z_]+)(?:\s+error_description\s*:\s*(.+?))?(?=\s+[a-z_]+\s*:\s|$)/,
  );
  if (oauthError) return sanitize(`"${oauthError[1]}"${oauthError[2] ? ` (${oauthError[2]})` : ""}`, 200);
  return sanitize(text, 200);
}

// ── 12 Getting the code back: the redirect URI, Deno.serve behind the connection guard ─────────────────────────────

/** The callback path of the default redirect URI. */
const CALLBACK_PATH = "/callback";

interface Redirect {
  /** The addresses we listen on: `127.0.0.1`, and also `::1` for `localhost`. */
  addresses: string[];
  /** The host as it appears in the redirect URI (`127.0.0.1`, `[::1]` or `localhost`). */
  host: string;
  port: number;
  path: string;
  /** A registered redirect URI, sent exactly as configured (servers compare it byte for byte). */
  fixed?: string;
}

/** Works out host, port and path of the redirect, and where to listen. */
const planRedirect: (redirectUri: string | undefined) => Redirect =
  (function planRedirect(redirectUri: string | undefined): Redirect {
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
    const addresses = url.hostname === "localhost"
      ? ["127.0.0.1", "::1"]
      : [url.hostname === "[::1]" ? "::1" : "127.0.0.1"];
    // RFC 8252 §7.3: a loopback redirect registered without a port (or with port 0) accepts any port.
    // We bind a free one and send the URI with it; `URL` drops an explicit `:80`, so read the text.
    const written = redirectUri.match(/^http:\/\/(?:\[[^\]]*\]|[^/?#:]*)(?::(\d*))?(?:[/?#]|$)/i)?.[1];
    if (written === undefined || written === "" || Number(written) === 0) {
      return { addresses, host: url.hostname, port: 0, path: url.pathname };
    }
    return { addresses, host: url.hostname, port: Number(url.port || 80), path: url.pathname, fixed: redirectUri };
  }).bind(undefined);

/** The redirect to use: the configured one, else the loopback host and path the provider preset wants. */
function presetRedirect(config: Pick<Config, "redirectUri" | "provider">): Redirect {
  const preset = presetOf(config);
  if (config.redirectUri !== undefined || !preset?.loopbackHost) return planRedirect(config.redirectUri);
  const localhost = preset.loopbackHost === "localhost";
  return {
    addresses: localhost ? ["127.0.0.1", "::1"] : ["127.0.0.1"],
    host: preset.loopbackHost,
    port: 0,
    path: preset.callbackPath ?? CALLBACK_PATH,
  };
}

function redirectUriFor(redirect: Redirect, port: number): string {
  return redirect.fixed ?? `http://${redirect.host}:${port}${redirect.path}`;
}

/** The Host header values the callback server answers: the redirect's host with the port (also without it on port 80). */
function hostsFor(redirect: Redirect, port: number): string[] {
  return redirect.port === 80 ? [`${redirect.host}:${port}`, redirect.host] : [`${redirect.host}:${port}`];
}

/** A shutdown of the callback server never waits longer than this for the answers under way. */
const SHUTDOWN_GRACE_MS = 1_000;

/** What answers the callback server's requests. */
type Handler = (request: Request) => Response | Promise<Response>;

/**
 * Whether the program at the other end of a connection (`remote`; `local` is the guard's end) may be
 * answered (`sameUser`), asked once it has sent something. Absent: any.
 */
type Admit = (local: Deno.NetAddr, remote: Deno.NetAddr) => Promise<boolean>;

interface Listener {
  port: number;
  /** Installs the handler; until then every request gets 503. */
  handle(handler: Handler): void;
  close(): Promise<void>;
}

/**
 * Serves the callback on the loopback address(es) of the redirect (`localhost`: 127.0.0.1 and ::1,
 * one port). Deno.serve hosts it: on a Unix socket in a private folder, reached only through the
 * connection guard that holds the loopback port (`guardConnections`). On Windows, where Deno has no
 * Unix sockets, Deno.serve listens on the loopback port itself, without the guard's limits.
 */
async function listen(redirect: Redirect, admit?: Admit): Promise<Listener> {
  let handler: Handler | undefined;
  const serve: Handler = (request) => handler ? handler(request) : page(503, "Not ready", "Try again in a moment.");
  const host = Deno.build.os === "windows"
    ? await serveDirectly(redirect, serve)
    : serveGuarded(redirect, serve, admit);
  return {
    port: host.port,
    handle(next) {
      handler = next;
    },
    close: host.close,
  };
}

/**
 * Binds every address of the redirect on one port with `bind` (an ephemeral port: the one the first
 * address got); a machine without IPv6 serves `localhost` on 127.0.0.1 alone. Throws `bindFailure`.
 */
function bindLoopback<T extends { addr: Deno.NetAddr; close(): void }>(
  redirect: Redirect,
  bind: (hostname: string, port: number) => T,
): T[] {
  const bound: T[] = [];
  let port = redirect.port;
  for (let attempt = 0;; attempt++) {
    try {
      for (const address of redirect.addresses) {
        try {
          bound.push(bind(address, port));
          port = bound[0].addr.port;
        } catch (error) {
          // A machine without IPv6 cannot bind ::1; then 127.0.0.1 alone serves `localhost`.
          if (address === "::1" && error instanceof Deno.errors.AddrNotAvailable && bound.length > 0) continue;
          throw error;
        }
      }
      return bound;
    } catch (error) {
      for (const one of bound.splice(0)) one.close(); // nothing was served on them yet
      // With an ephemeral port, ::1 may already hold the port 127.0.0.1 got: pick another.
      if (error instanceof Deno.errors.AddrInUse && redirect.port === 0 && attempt < 5) {
        port = 0;
        continue;
      }
      throw bindFailure(error, redirect, port);
    }
  }
}

/** A Unix socket's path holds at most 104 bytes (macOS; 108 on Linux): a longer TMPDIR gives way to /tmp. */
const MAX_FOLDER_BYTES = 90;

/** Deno.serve on a Unix socket in a new private folder (0700, removed at close), behind the guard on the loopback. */
function serveGuarded(redirect: Redirect, serve: Handler, admit?: Admit): { port: number; close(): Promise<void> } {
  const listeners = bindLoopback(redirect, (hostname, port) => Deno.listen({ hostname, port, transport: "tcp" }));
  let folder: string | undefined;
  try {
    folder = Deno.makeTempDirSync({ prefix: "oauth-login-" }); // 0700: no other user can reach the socket
    if (new TextEncoder().encode(folder).length > MAX_FOLDER_BYTES) {
      Deno.removeSync(folder);
      folder = Deno.makeTempDirSync({ dir: "/tmp", prefix: "oauth-login-" });
    }
    const path = `${folder}/http.sock`;
    const http = serveOn({ path }, serve);
    const guard = guardConnections(listeners, () => Deno.connect({ transport: "unix", path }), { folder, admit });
    return {
      port: listeners[0].addr.port,
      async close() {
        await guard.stop();
        // Graceful: Deno.serve writes out the answers under way and closes idle keep-alive connections.
        // Not an abort: it could cut off a page whose `info.completed` has resolved before the page was
        // written, and once shutdown() has begun, an abort throws (BadResource, in an event listener).
        const shutdown = http.server.shutdown().catch(() => {});
        const grace = delay(SHUTDOWN_GRACE_MS);
        await Promise.race([shutdown.then(guard.flushed), grace.done]);
        grace.cancel();
        await guard.cut(); // whatever is left (a client that neither reads nor closes, an endless body)
        const handlers = delay(SHUTDOWN_GRACE_MS); // all connections are gone: only a handler still at work holds it
        await Promise.race([shutdown, handlers.done]);
        handlers.cancel();
        await Deno.remove(folder!, { recursive: true }).catch(() => {});
      },
    };
  } catch (error) {
    for (const listener of listeners) listener.close();
    if (folder) Deno.removeSync(folder, { recursive: true });
    if (!(error instanceof Deno.errors.NotCapable)) throw error;
    throw new LoginError(
      "config",
      "Deno's permissions do not allow the callback server's socket in the temporary folder",
      {
        hint: "run again with --allow-read and --allow-write for the temporary folder (TMPDIR, else /tmp), " +
          "as the deno.json tasks grant",
      },
    );
  }
}

/** Windows: Deno.serve on the loopback port itself (Deno has no Unix sockets there), so without the guard's limits. */
async function serveDirectly(redirect: Redirect, serve: Handler): Promise<{ port: number; close(): Promise<void> }> {
  const aborted: Served[] = []; // those of a failed attempt to bind, which never served
  try {
    const servers = bindLoopback(redirect, (hostname, port) => {
      const http = serveOn({ hostname, port }, serve);
      const close = () => {
        aborted.push(http);
        http.controller.abort();
      };
      return { ...http, addr: http.server.addr as Deno.NetAddr, close };
    });
    return {
      port: servers[0].addr.port,
      async close() {
        // Graceful, as above; a connection that outlasts the grace is left to the end of the process.
        const grace = delay(SHUTDOWN_GRACE_MS);
        await Promise.race([Promise.all(servers.map((http) => http.server.shutdown().catch(() => {}))), grace.done]);
        grace.cancel();
      },
    };
  } finally {
    await Promise.all(aborted.map((http) => http.server.finished.catch(() => {}))); // their ports are free again
  }
}

/** A Deno.serve server of the callback and the controller that stops it. */
interface Served {
  server: Deno.HttpServer<Deno.Addr>;
  controller: AbortController;
}

/**
 * Deno.serve on a Unix socket (`path`) or a loopback address, quiet, with a plain page when the
 * handler throws. Deno moves the first server of a process to DENO_SERVE_ADDRESS when that is set
 * (all interfaces, if it says so, or there as well as here): the variable is removed from this
 * process first, and a server that is not where it was asked is refused.
 */
function serveOn(where: { path: string } | { hostname: string; port: number }, handler: Handler): Served {
  const variable = { name: "env", variable: "DENO_SERVE_ADDRESS" } as const;
  if (Deno.permissions.querySync(variable).state === "granted") Deno.env.delete(variable.variable);
  const controller = new AbortController();
  const serve = (request: Request) => handler(request); // `info.remoteAddr` would be the socket, not the browser
  const onError = () => page(500, "Error", "Something went wrong; see the terminal.");
  const options = { signal: controller.signal, onListen() {}, onError };
  const server: Deno.HttpServer<Deno.Addr> = "path" in where
    ? Deno.serve({ ...options, transport: "unix", path: where.path }, serve)
    : Deno.serve({ ...options, ...where }, serve);
  // Deno.serve's accept loop ends at its first failed accept and rejects `finished`: never uncaught.
  server.finished.catch(() => {});
  const addr = server.addr as { path?: string; hostname?: string; port?: number };
  const moved = "path" in where
    ? addr.path !== where.path
    : addr.hostname !== where.hostname || (where.port !== 0 && addr.port !== where.port);
  if (moved) {
    controller.abort();
    const at = addr.path ?? `${addr.hostname}:${addr.port}`;
    throw new LoginError("config", `DENO_SERVE_ADDRESS moved the login's callback server to "${sanitize(at)}"`, {
      hint: "unset DENO_SERVE_ADDRESS for the login, or let the login read it (--allow-env=DENO_SERVE_ADDRESS) " +
        "so that it sets it aside",
    });
  }
  return { server, controller };
}

/**
 * The connection guard's limits (see `guardConnections`). Each connection costs three descriptors:
 * its socket, ours to Deno.serve and Deno.serve's end of it.
 */
const MAX_CONNECTIONS = 64;
/** A connection without a complete request head may give its place after this, and is closed after HEAD_TIMEOUT_MS. */
const IDLE_GRACE_MS = 250;
const HEAD_TIMEOUT_MS = 10_000;
/** A connection older than this gives its place too, whatever it does: none is held for good by being kept busy. */
const OLD_MS = 10_000;
/** A connection is taken only while this many descriptors are left: for the next ones, the code exchange, the cache. */
const FREE_DESCRIPTORS = 12;
/** After a failed accept (or too few descriptors left) the guard retries after this, allowing two connections fewer. */
const ACCEPT_RETRY_MS = 50;
const MIN_CONNECTIONS = 4;
/** After Deno.serve has ended a connection, the client has this long to read the end of the answer and close. */
const LINGER_MS = 1_000;

/** One connection the guard accepted and splices to Deno.serve. */
interface Spliced {
  /** When it was accepted (performance.now()). */
  since: number;
  /** Its first request head is complete ("\r\n\r\n" came). */
  requested: boolean;
  /** The last bytes were Deno.serve's: an answer is out and nothing was asked since (keep-alive). */
  answered: boolean;
  /** Closes both of its sockets. */
  cut(): void;
  /** Resolves once Deno.serve has ended its side and all it wrote is passed on. */
  flushed: Promise<void>;
  /** Resolves once both sockets are closed. */
  done: Promise<void>;
}

/**
 * The connection guard: the only thing listening on the loopback port. It accepts within limits and
 * splices each connection's bytes both ways to Deno.serve (`upstream` connects to it), parsing no
 * HTTP. It exists because Deno.serve's accept loop ends for good at its first failed accept
 * (EMFILE; denoland/deno#10148) and Deno.serve has no connection limit and no idle or header timeout:
 * idle local connections that used up the descriptors crashed a waiting login. Deno.serve still
 * parses every byte (the design card: the HTTP is Deno's, that is hyper's, not ours to own).
 *
 * Limits: at most MAX_CONNECTIONS open, one more accepted and waiting for a place, the rest
 * unaccepted in the kernel's backlog; a connection is taken only while FREE_DESCRIPTORS can be
 * opened (`reserveDescriptors`, so that Deno.serve's own accept always finds one); a failed accept,
 * or too few descriptors, lowers the limit and is retried after ACCEPT_RETRY_MS; for a connection
 * that came, the oldest idle one is cut: no complete request head after IDLE_GRACE_MS, its answer
 * out (kept alive by the client: Deno.serve has no idle timeout), or older than OLD_MS.
 */
function guardConnections(
  listeners: Deno.TcpListener[],
  upstream: () => Promise<Deno.Conn>,
  { folder, admit }: { folder: string; admit?: Admit },
) {
  const open = new Set<Spliced>(); // in the order accepted: the oldest first
  let cap = MAX_CONNECTIONS;
  let closing = false;
  /** Whether a connection may give its place: no request head after IDLE_GRACE_MS, its answer out, or old. */
  const idle = (c: Spliced, now: number) => {
    const age = now - c.since;
    return c.requested ? c.answered || age >= OLD_MS : age >= IDLE_GRACE_MS;
  };
  /** Waits for room for one more connection, cutting the oldest idle one; false once closing. */
  const room = async (): Promise<boolean> => {
    while (!closing && open.size >= cap) {
      const now = performance.now();
      const oldest = [...open].find((connection) => idle(connection, now));
      if (oldest) {
        oldest.cut();
        await oldest.done;
      } else await delay(ACCEPT_RETRY_MS).done;
    }
    return !closing;
  };
  const acceptLoop = async (listener: Deno.TcpListener) => {
    while (!closing) {
      let conn: Deno.Conn | undefined;
      try {
        reserveDescriptors(folder, FREE_DESCRIPTORS); // throws EMFILE as accept would, before a connection is taken
        conn = await listener.accept();
        // Only a connection that came takes a place from another: meanwhile the rest wait in the backlog.
        if (!await room()) return closeQuietly(conn);
        const ends = [conn.localAddr as Deno.NetAddr, conn.remoteAddr as Deno.NetAddr] as const;
        const spliced = splice(conn, await upstream(), admit && (() => admit(...ends)));
        open.add(spliced);
        spliced.done.then(() => open.delete(spliced));
        if (closing) spliced.cut();
      } catch (error) {
        if (conn) closeQuietly(conn);
        if (closing || error instanceof Deno.errors.BadResource) return;
        // Out of descriptors (EMFILE, ENFILE), or a connection aborted: it waits in the backlog; try again.
        const code = (error as { code?: string }).code;
        if (code === "EMFILE" || code === "ENFILE") {
          cap = Math.max(MIN_CONNECTIONS, open.size - 2);
          await room(); // fewer connections from now on: idle ones make room at once
        }
        await delay(ACCEPT_RETRY_MS).done;
      }
    }
  };
  const loops = listeners.map(acceptLoop);
  return {
    /** Stops accepting, and cuts the connections that have sent no request. */
    async stop() {
      closing = true;
      for (const listener of listeners) closeQuietly(listener);
      await Promise.all(loops);
      for (const connection of open) if (!connection.requested) connection.cut();
    },
    /** Resolves once all that Deno.serve wrote is passed on (it has ended every connection). */
    flushed: async () => void await Promise.all([...open].map((connection) => connection.flushed)),
    /** Cuts every connection left. */
    async cut() {
      for (const connection of open) connection.cut();
      await Promise.all([...open].map((connection) => connection.done));
    },
  };
}

/** Throws (EMFILE) unless `count` more descriptors can be had: opens the folder that many times and closes it again. */
function reserveDescriptors(folder: string, count: number): void {
  const opened: Deno.FsFile[] = [];
  try {
    while (opened.length < count) opened.push(Deno.openSync(folder));
  } finally {
    for (const file of opened) file.close();
  }
}

/**
 * Splices `client` and `server` both ways, watching the client's bytes only for the end of its first
 * request head. With `admit`, nothing the client sends reaches the server until it says yes, once,
 * when the first bytes came (an idle connection costs no asking); a no cuts the connection.
 */
function splice(client: Deno.Conn, server: Deno.Conn, admit?: () => Promise<boolean>): Spliced {
  const deadline = delay(HEAD_TIMEOUT_MS);
  let last = 0; // the client's last four bytes, to find "\r\n\r\n" however the reads cut it
  const spliced: Spliced = {
    since: performance.now(),
    requested: false,
    answered: false,
    cut() {
      closeQuietly(client);
      closeQuietly(server);
    },
    flushed: Promise.resolve(),
    done: Promise.resolve(),
  };
  deadline.done.then(() => spliced.requested || spliced.cut());
  const up = pipe(client, server, (bytes) => {
    spliced.answered = false;
    for (let i = 0; i < bytes.length && !spliced.requested; i++) {
      last = ((last << 8) | bytes[i]) >>> 0;
      spliced.requested = last === 0x0d0a0d0a;
    }
    if (spliced.requested) deadline.cancel();
  }, admit && (async () => (await admit()) || (spliced.cut(), false)));
  spliced.flushed = pipe(server, client, () => spliced.answered = true);
  spliced.done = (async () => {
    await spliced.flushed; // Deno.serve ended the connection (or the client did, and Deno.serve followed)
    const linger = delay(LINGER_MS);
    await Promise.race([up, linger.done]);
    linger.cancel();
    deadline.cancel();
    spliced.cut();
    await up;
  })();
  return spliced;
}

/**
 * Copies `from` to `to` until `from` ends, then ends `to`'s writing; `seen` hears of each read, and
 * `gate`, when given, is asked before the first bytes pass (false: nothing passes). What
 * `to` no longer takes is read and dropped, so that closing does not reset a connection under an
 * answer the client has yet to read. Never throws: a cut or a peer that went away ends it.
 */
async function pipe(
  from: Deno.Conn,
  to: Deno.Conn,
  seen: (bytes: Uint8Array) => void,
  gate?: () => Promise<boolean>,
): Promise<void> {
  const buffer = new Uint8Array(16 * 1024);
  let writing = true;
  try {
    for (let n = await from.read(buffer); n !== null; n = await from.read(buffer)) {
      seen(buffer.subarray(0, n));
      if (gate && !await gate()) return; // refused: the gate has cut the connection
      gate = undefined;
      try {
        for (let written = 0; writing && written < n;) written += await to.write(buffer.subarray(written, n));
      } catch {
        writing = false;
      }
    }
  } catch { /* cut, or reset by the peer */ }
  if (writing) await to.closeWrite().catch(() => {});
}

/** Closes a connection or listener that may be closed already. */
function closeQuietly(resource: { close(): void }): void {
  try {
    resource.close();
  } catch { /* already closed */ }
}

/** A failure to bind the callback `port` as the error to throw: LoginError("port_in_use") when busy or refused. */
function bindFailure(error: unknown, redirect: Redirect, port: number): unknown {
  if (error instanceof Deno.errors.AddrInUse) {
    return new LoginError("port_in_use", `Port ${redirect.port} is already in use by another program`, {
      hint: "stop that program, or register another redirect URI and pass it with --redirect-uri or --port",
      cause: error,
    });
  }
  if (error instanceof Deno.errors.AddrNotAvailable || error instanceof Deno.errors.PermissionDenied) {
    return new LoginError(
      "port_in_use",
      `Cannot listen on ${redirect.addresses.join(" and ")} port ${port}: ${sanitize((error as Error).message)}`,
      {
        hint: error instanceof Deno.errors.PermissionDenied && port < 1024
          ? "ports below 1024 need administrator rights: register a redirect URI without a port (any free port) or with one above 1023"
          : undefined,
        cause: error,
      },
    );
  }
  return error;
}

// ── 13 Who may sign in here: the start address, its owner check, the pages, and the browser ────────────────────────

/** The random bytes in the start address's path: 96 bits, 16 characters. */
const START_PATH_BYTES = 12;

/**
 * A path for the start address (`http://127.0.0.1:PORT/PATH`, which redirects to the authorization
 * request): random, so that no other local process or user can fetch the request (its `state`, PKCE
 * challenge or PAR `request_uri`) and sign the person in to their own account. Base64url, no padding.
 */
function startPath(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(START_PATH_BYTES));
  return `/${btoa(String.fromCharCode(...bytes)).replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, "")}`;
}

/** Compares two strings in time that does not depend on where they differ. */
function timingSafeEqual(a: string, b: string): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a.charCodeAt(i) ^ b.charCodeAt(i);
  return diff === 0;
}

/**
 * The uids owning the two ends of the loopback TCP connection `local` ↔ `remote`, read from the output
 * of `ss -tanHe` (a line per socket: its state, its address, its peer's, and `uid:N` unless N is 0);
 * undefined unless both ends are there. Pure.
 */
function socketOwners(
  text: string,
  local: Deno.NetAddr,
  remote: Deno.NetAddr,
): { ours: number; theirs: number } | undefined {
  const named = (address: Deno.NetAddr) =>
    address.hostname.includes(":") ? `[${address.hostname}]:${address.port}` : `${address.hostname}:${address.port}`;
  const owner = (from: Deno.NetAddr, to: Deno.NetAddr) => {
    for (const line of text.split("\n")) {
      const ends = line.trim().split(/\s+/).filter((word) =>
        /^(?:\[[\w:.%]+\]|\d{1,3}(?:\.\d{1,3}){3}):\d+$/.test(word)
      );
      if (ends[0] === named(from) && ends[1] === named(to)) return Number(line.match(/\buid:(\d+)/)?.[1] ?? 0);
    }
    return undefined;
  };
  const [ours, theirs] = [owner(local, remote), owner(remote, local)];
  return ours === undefined || theirs === undefined ? undefined : { ours, theirs };
}

/**
 * The edge of `socketOwners`: the sockets in every state (a client that half-closed its end after its
 * request is in FIN-WAIT-2, not established), from `ss` (`ssTable`). Undefined when `ss` is not there
 * or may not be run, or when the client's end is not in this machine's table (WSL's mirrored network:
 * the browser's socket is Windows'). Rejects when `ss` fails or takes more than 2 s (as thousands of
 * sockets opened to slow it down would make it): then nothing is let through.
 */
async function loopbackSocketOwners(
  local: Deno.NetAddr,
  remote: Deno.NetAddr,
): Promise<{ ours: number; theirs: number } | undefined> {
  const table = await ssTable();
  return table === undefined ? undefined : socketOwners(table, local, remote);
}

/** The `ss` run that starts when the one under way ends, shared by every caller until then. */
let nextSs: Promise<string | undefined> | undefined;
let runningSs: Promise<unknown> = Promise.resolve();

/**
 * The output of `ss -tanHe` (iproute2; argv, no shell), from a run that started after this call: it
 * lists every connection accepted before. Callers that come while one runs share the next run, so a
 * flood of connections costs two runs at a time, not one each. Undefined when `ss` is not there or may
 * not be run; rejects when it fails or takes more than 2 s.
 */
function ssTable(): Promise<string | undefined> {
  if (nextSs) return nextSs;
  const run = runningSs.then(async () => {
    nextSs = undefined; // it starts now: later callers wait for the run after it
    let output: Deno.CommandOutput;
    try {
      output = await new Deno.Command("ss", {
        args: ["-tanHe"],
        stdin: "null",
        stdout: "piped",
        stderr: "null",
        signal: AbortSignal.timeout(2_000),
      }).output();
    } catch (error) {
      if (error instanceof Deno.errors.NotFound || error instanceof Deno.errors.NotCapable) return undefined;
      throw error;
    }
    if (!output.success) throw new Error(`ss exited with code ${output.code}`);
    return new TextDecoder().decode(output.stdout);
  });
  nextSs = run;
  runningSs = run.catch(() => {});
  return run;
}

/**
 * Whether the program at the other end of a callback connection runs as the user who started the
 * login (or as root, who could read this process's memory anyway). The start address is in the
 * browser opener's argv, which any local user can read in /proc/PID/cmdline; the one who fetched it
 * first would get the authorization request, and could sign the person in to an account of theirs.
 * A program of another user is refused (the person told), as is any when `ss` fails; when the
 * owners cannot be told (no `ss`, a browser outside this machine's socket table), it is let through.
 */
async function sameUser(local: Deno.NetAddr, remote: Deno.NetAddr, deps: Deps): Promise<boolean> {
  const owners = await deps.socketOwners?.(local, remote).catch(() => null);
  if (owners === undefined || (owners && (owners.theirs === owners.ours || owners.theirs === 0))) return true;
  const who = owners
    ? `A program of another user of this computer (uid ${owners.theirs})`
    : "A program (whose user ss could not tell)";
  say(
    deps,
    `warning: ${who} connected to the sign-in server and was refused; if it was your browser, run the login as the user your browser runs as`,
  );
  return false;
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

/** The small, self-contained page the browser gets from the callback server; `detail` is a quieter second line. */
function page(status: number, title: string, message: string, detail?: string): Response {
  const more = detail ? `<p class="detail">${escapeHtml(detail)}</p>` : "";
  const body = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${escapeHtml(title)}</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:36em;margin:4em auto;padding:0 1em}.detail{color:#555}</style>
</head><body><h1>${escapeHtml(title)}</h1><p>${escapeHtml(message)}</p>${more}</body></html>
`;
  return new Response(body, { status, headers: pageHeaders({ "content-type": "text/html; charset=utf-8" }) });
}

interface CallbackOptions {
  /** Host header values we answer: the redirect's host with its port. */
  hosts: string[];
  path: string;
  state: string;
  /** The start address's path (`startPath()`): a GET on it, without a query, sends the browser on to `authorizationUrl`. */
  startPath: string;
  /**
   * Where the start address sends the browser, asked on each visit (a pushed request is pushed again
   * once handed out or expired, see `startTarget`); its failure is shown on a page.
   */
  authorizationUrl: () => Promise<string>;
  /** Runs once, for the first callback that carries the right state; its page is the answer. */
  accept: (params: URLSearchParams) => Promise<Response>;
}

/**
 * The callback server's request handler. Only a GET on the callback path with the pending `state`
 * is handed to `accept`, once; everything else gets a 4xx and the login keeps waiting.
 */
function callbackHandler(options: CallbackOptions): (request: Request) => Promise<Response> {
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
    if (!url.search && !consumed && timingSafeEqual(url.pathname, options.startPath)) {
      try {
        return new Response(null, {
          status: 302,
          headers: pageHeaders({ location: await options.authorizationUrl() }),
        });
      } catch (error) {
        const why = error instanceof Error ? sanitize(error.message) : "the server could not be asked";
        return page(500, "Cannot start the sign-in", `${why}. See your terminal.`);
      }
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
    // A malformed answer does not use up the state: only a well-formed one ends the wait.
    const repeated = ["code", "error", "error_description", "iss"].find((p) => url.searchParams.getAll(p).length > 1);
    const outcomes = ["code", "error"].filter((p) => url.searchParams.has(p)).length;
    if (repeated || outcomes !== 1) {
      return page(
        400,
        "Malformed sign-in response",
        repeated
          ? `The parameter "${repeated}" appears more than once. Nothing was changed.`
          : "The response must carry either a code or an error. Nothing was changed.",
      );
    }
    consumed = true;
    return await options.accept(url.searchParams);
  };
}

/** The page the browser ends on: who signed in and at which provider, or what failed and what to do next. */
function resultPage(outcome: SignInResult | unknown, provider: string, deps: Deps): Response {
  const detail = `Provider: ${provider}`;
  if (outcome && typeof outcome === "object" && "tokens" in outcome) {
    const user = (outcome as SignInResult).user;
    const name = user ? `Signed in as ${sanitize(user)}` : "Signed in";
    return page(200, "Signed in", `${name} — you can close this tab and return to your terminal.`, detail);
  }
  const error = outcome;
  const message = error instanceof Error ? sanitize(error.message) : "Unknown error";
  const title = error instanceof ErrorResponse && error.code === "access_denied"
    ? "Sign-in cancelled"
    : "Sign-in failed";
  const hint = (error instanceof ErrorResponse || error instanceof LoginError) && error.hint
    ? ` Next: ${sanitize(hintFor(error.hint, deps))}.`
    : "";
  return page(400, title, `${message}.${hint} See your terminal for details.`, detail);
}

/** How a browser is opened here: the one decision that `doctor`, the flow choice and the opener share. */
interface BrowserOpener {
  /** Whether a browser can be opened on this machine; `reason` says why (not). */
  ok: boolean;
  reason: string;
  /** An SSH session: a browser that opens may run on another machine, which cannot reach our loopback. */
  remote?: boolean;
  /** The program that would run (what `doctor` announces); absent when none can. */
  opener?: string;
  /**
   * The commands to try, in order, until one starts: argv, never a shell string; an argument "%s"
   * stands for the URL (see `openerArgv`). At least one, even when `ok` is false.
   */
  commands: string[][];
}

/**
 * Decides how to open a browser on this platform (the single place that does): `$BROWSER` when set
 * (see `browserCommands`), else `open` on macOS (not over SSH), `rundll32` on Windows, `wslview`
 * under WSL where it is installed, else `xdg-open` where there is a display. Pure: the environment
 * and the PATH lookup (`which`, which also answers for a path) are given.
 */
function browserAvailability(
  platform: { os: string; env: (name: string) => string | undefined; which: (command: string) => boolean },
): BrowserOpener {
  const { env, which } = platform;
  const browser = env("BROWSER")?.trim();
  const commands = browser ? browserCommands(browser, platform) : [];
  const ssh = !!(env("SSH_CONNECTION") || env("SSH_CLIENT") || env("SSH_TTY"));
  if (commands.length > 0) {
    // The first command whose program is there goes first; the others are still tried after it.
    const found = commands.filter((command) => which(command[0]));
    const ordered = [...found, ...commands.filter((command) => !found.includes(command))];
    const reason = found.length > 0 ? "$BROWSER is set" : "$BROWSER is set, but none of its programs was found";
    return { ok: true, reason, opener: ordered[0][0], commands: ordered, remote: ssh };
  }
  if (platform.os === "windows") {
    return {
      ok: true,
      reason: "Windows",
      opener: "rundll32",
      commands: [["rundll32", "url.dll,FileProtocolHandler", "%s"]],
    };
  }
  if (platform.os === "darwin") {
    const commands = [["open", "%s"]];
    return ssh
      ? { ok: false, reason: "this is an SSH session", commands }
      : { ok: true, reason: "macOS", opener: "open", commands };
  }
  const wsl = platform.os === "linux" && !!(env("WSL_DISTRO_NAME") || env("WSL_INTEROP"));
  if (wsl && which("wslview")) {
    return { ok: true, reason: "WSL with wslview", opener: "wslview", commands: [["wslview", "%s"]] };
  }
  const xdg = [["xdg-open", "%s"]];
  const without = wsl ? "this is WSL without wslview (from wslu), and " : "";
  if (!env("DISPLAY") && !env("WAYLAND_DISPLAY")) {
    return {
      ok: false,
      reason: ssh
        ? `${without}this is an SSH session without a forwarded display`
        : `${without}there is no display (DISPLAY and WAYLAND_DISPLAY are unset)`,
      commands: xdg,
    };
  }
  if (!which("xdg-open")) return { ok: false, reason: `${without}xdg-open is not installed`, commands: xdg };
  const reason = wsl ? "WSL without wslview, with a display and xdg-open" : "a display and xdg-open are available";
  return { ok: true, reason, opener: "xdg-open", commands: xdg, remote: ssh };
}

/**
 * The commands a `$BROWSER` value names, as argv with "%s" for the URL. The value is a list of
 * alternatives separated by ":" (";" on Windows), unless the whole value is the path of a program
 * that exists (so a path may hold spaces). Each alternative is a program's path that exists (spaces
 * and all), or else a command line split on spaces, where "double" or 'single' quotes keep spaces
 * together. An argument holding "%s" gets the URL there (the xdg convention); otherwise the URL is
 * the last argument. Nothing goes through a shell.
 */
function browserCommands(
  value: string,
  platform: { os: string; which: (command: string) => boolean },
): string[][] {
  const isPath = (text: string) => text.includes("/") || (platform.os === "windows" && text.includes("\\"));
  const program = (text: string) => isPath(text) && platform.which(text);
  const entries = program(value) ? [value] : value.split(platform.os === "windows" ? ";" : ":");
  const commands: string[][] = [];
  for (const entry of entries.map((text) => text.trim())) {
    const argv = program(entry) ? [entry] : splitWords(entry);
    if (argv.length === 0) continue;
    commands.push(argv.slice(1).some((arg) => arg.includes("%s")) ? argv : [...argv, "%s"]);
  }
  return commands;
}

/** Splits a command line on white space; "double" or 'single' quotes keep spaces in a word. No escapes. */
function splitWords(text: string): string[] {
  const words: string[] = [];
  let word: string | undefined;
  let quote: string | undefined;
  for (const char of text) {
    if (quote) {
      if (char === quote) quote = undefined;
      else word += char;
    } else if (char === '"' || char === "'") {
      quote = char;
      word ??= "";
    } else if (/\s/.test(char)) {
      if (word !== undefined) words.push(word);
      word = undefined;
    } else word = (word ?? "") + char;
  }
  if (word !== undefined) words.push(word);
  return words;
}

/** One opener command with the URL in place of "%s" in its arguments (the program is left as it is). */
function openerArgv(command: string[], url: string): string[] {
  return [command[0], ...command.slice(1).map((arg) => arg.replaceAll("%s", url))];
}

/** The argv `browserAvailability` would run first to open `url` (`wsl` says WSL without its variables). */
function openerCommand(
  url: string,
  platform: {
    os: string;
    env: (name: string) => string | undefined;
    wsl?: boolean;
    which?: (command: string) => boolean;
  },
): string[] {
  const env = (name: string) => name === "WSL_DISTRO_NAME" && platform.wsl ? "WSL" : platform.env(name);
  const { commands } = browserAvailability({ os: platform.os, env, which: platform.which ?? (() => true) });
  return openerArgv(commands[0], url);
}

/** How long we wait for the browser opener itself before carrying on. */
const OPENER_TIMEOUT_MS = 10_000;

/**
 * The real opener: runs what `browserAvailability` decides, with argv (never a shell) and a time
 * limit, trying each command in turn until one starts (one not found, or that exits with an error,
 * passes to the next). Throws the last failure when none starts.
 */
async function openWithSystemBrowser(url: string): Promise<void> {
  const protocol = parseUrl(url)?.protocol;
  if (protocol !== "https:" && protocol !== "http:") throw new Error("only http(s) addresses are opened");
  const env = (name: string) => Deno.env.get(name);
  const { commands } = browserAvailability({ os: Deno.build.os, env, which: (command) => onPath(command, env) });
  let failure: unknown;
  for (const command of commands) {
    try {
      return await runOpener(openerArgv(command, url));
    } catch (error) {
      failure = error;
    }
  }
  throw failure;
}

/**
 * Runs one opener; resolves once it exits with success or is still running after the limit. It and
 * the browser it starts get none of this tool's settings (each `OAUTH_*` variable is emptied): they
 * need none, and a child's environment is the parent's, `OAUTH_CLIENT_SECRET` included.
 */
async function runOpener([program, ...args]: string[]): Promise<void> {
  let child: Deno.ChildProcess;
  try {
    const env = Object.fromEntries(Object.values(ENV_VARS).map((name) => [name, ""]));
    child = new Deno.Command(program, { args, env, stdin: "null", stdout: "null", stderr: "null" }).spawn();
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) throw new Error(`"${program}" was not found`);
    if (error instanceof Deno.errors.NotCapable) {
      throw new Error(`Deno's permissions do not allow running "${program}": add --allow-run=${program}`);
    }
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

// ── 14 Signing in: the browser flow, paste-back and the device flow ────────────────────────────────────────────────

/** The flow for `--flow auto`: the browser where one can be opened, else the device flow where the server has it. */
function chooseFlow(
  config: Pick<Config, "flow" | "browser">,
  browser: { ok: boolean; reason: string },
  deviceSupported: boolean,
): { flow: "browser" | "device"; openBrowser: boolean; note?: string } {
  if (config.flow === "device") return { flow: "device", openBrowser: config.browser && browser.ok };
  if (config.flow === "browser") return { flow: "browser", openBrowser: config.browser };
  const why = config.browser ? browser.reason : "--no-browser was given";
  if (config.browser && browser.ok) return { flow: "browser", openBrowser: true };
  if (deviceSupported) {
    return {
      flow: "device",
      openBrowser: false,
      note: `Using the device flow: no browser can be opened here (${why})`,
    };
  }
  return {
    flow: "browser",
    openBrowser: false,
    note:
      `No browser can be opened here (${why}) and the server has no device flow: open the address below in any browser`,
  };
}

/** What a login produced. */
export interface LoginResult {
  /** The token endpoint's answer (RFC 6749 §5.1), as oauth4webapi checked it. */
  tokens: {
    /** The access token (a secret). */
    readonly access_token: string;
    /** "bearer" or "dpop", lower-cased. */
    readonly token_type: string;
    /** The access token's lifetime in seconds, when the server said. */
    readonly expires_in?: number;
    /** The refresh token (a secret), when issued. */
    readonly refresh_token?: string;
    /** The ID token, when issued. */
    readonly id_token?: string;
    /** The granted scope, when the server said. */
    readonly scope?: string;
    /** Any other member of the answer. */
    readonly [member: string]: unknown;
  };
  /** The name we show: `username`, else `preferred_username`, `email` or `sub`. */
  user?: string;
  /** The `sub` of the ID token or UserInfo, when there is one. */
  subject?: string;
  /** The metadata the login used (RFC 8414 §2), kept with the tokens. */
  metadata: { readonly issuer: string; readonly [member: string]: unknown };
  /** How the client authenticated at the token endpoint. */
  authMethod: Config["clientAuth"] & string;
  /** The scope the authorization request asked for. */
  scope: string;
  /** The DPoP private key (a JWK, a secret) and the latest nonce per origin, when the tokens are DPoP-bound. */
  dpop?: { jwk: JsonWebKey; nonces: Record<string, string> };
}

/** What a login flow works with: the discovered issuer, the scope, and whether to open a browser. */
interface FlowContext {
  issuer: IssuerClient;
  scope: string;
  config: Config;
  deps: Deps;
  openBrowser: boolean;
  /** The browser may run on another machine (an SSH session): offer the address that works there. */
  remote?: boolean;
  trace?: Trace;
}

/**
 * Signs in as `config` says, through `deps`: discovery (RFC 8414 / OpenID), then the browser flow
 * (RFC 8252, PKCE RFC 7636) or the device flow (RFC 8628), whichever fits (`--flow`). Nothing is
 * cached: the CLI's `login` command does that. Throws `LoginError` or `ErrorResponse`.
 */
export async function login(config: Config, deps: Deps): Promise<LoginResult> {
  return await signIn(config, deps);
}

/** What a sign-in brought, as the flows and the cache use it (`LoginResult` with oauth4webapi's types). */
interface SignInResult extends Omit<LoginResult, "tokens" | "metadata" | "dpop"> {
  tokens: Oauth.TokenEndpointResponse;
  metadata: Oauth.AuthorizationServer;
  dpop?: DpopState;
}

/** `login`, returning what the tool keeps; `metadata`: the server's, when it was just discovered (`discoverResource`). */
async function signIn(config: Config, deps: Deps, metadata?: Oauth.AuthorizationServer): Promise<SignInResult> {
  const trace = makeTrace(config, deps);
  if (config.clientKey) await readClientKey(config.clientKey); // a key that will not do fails before the browser opens
  const issuer = metadata
    ? Object.assign(await issuerFor({ ...metadata }, config, deps, trace), { userClaim: config.userClaim })
    : await discover(config, deps, trace);
  const scope = config.scope ?? (withoutIssuer(config) ? "" : defaultScope(issuer.as.scopes_supported));
  checkScopeDelimiters(scope, issuer.as, config);
  if (config.dpop) {
    checkDpopOffered(issuer.as, config);
    const key = await newDpopKey(dpopAlgorithm(issuer.as.dpop_signing_alg_values_supported));
    await enableDpop(issuer, await dpopState(key, {}, deps));
  }
  const browser = browserAvailability({ os: deps.os, env: deps.env, which: deps.which });
  const deviceOffered = issuer.as.device_authorization_endpoint !== undefined;
  const choice = chooseFlow(config, browser, deviceOffered);
  if (choice.flow === "browser" && issuer.as.authorization_endpoint === undefined && withoutIssuer(config)) {
    throw new LoginError("config", "No authorization endpoint is configured", {
      hint: "pass --authorization-endpoint URL (or --device-authorization-endpoint URL for the device flow)",
    });
  }
  // Nobody could open the address or paste one back: say so now rather than wait for nothing.
  if (choice.flow === "browser" && !choice.openBrowser && config.browser && !someoneHere(deps)) {
    throw noBrowser(config, browser.reason, deviceOffered);
  }
  if (choice.note) say(deps, `${choice.note}`);
  const flow: FlowContext = {
    issuer,
    scope,
    config,
    deps,
    openBrowser: choice.openBrowser,
    remote: browser.remote,
    trace,
  };
  const result = await (choice.flow === "device" ? deviceLogin(flow) : browserLogin(flow)).catch((error) => {
    throw exchangeHint(error, issuer, config);
  });
  if (deps.signal.aborted) throw new LoginError("interrupted", "Login cancelled");
  return issuer.dpop ? { ...result, dpop: issuer.dpop } : result;
}

/** Whether a person is at this terminal (stdin and stderr are terminals), who can open a printed address by hand. */
function someoneHere(deps: Pick<Deps, "canPrompt">): boolean {
  return deps.canPrompt;
}

/** The browser flow: PKCE, the loopback callback (or the pasted address), the code exchange, who logged in. */
async function browserLogin(flow: FlowContext): Promise<SignInResult> {
  const { issuer, scope, config, deps, openBrowser, trace } = flow;
  const oauth = await lib();
  const { as } = issuer;
  const noIssuer = (as as Record<string, unknown>)[NO_ISSUER] === true;
  const redirect = presetRedirect(config);
  const admit = deps.socketOwners
    ? (local: Deno.NetAddr, remote: Deno.NetAddr) => sameUser(local, remote, deps)
    : undefined;
  const listener = await listen(redirect, admit);
  try {
    const request = newRequest(oauth, scope, redirectUriFor(redirect, listener.port), config, noIssuer);
    const authorization = await authorizationRequest(issuer, config, request, deps, trace);
    const { promise: outcome, resolve, reject } = Promise.withResolvers<SignInResult>();
    outcome.catch(() => {}); // handled by the wait; avoid an unhandled rejection when we time out first
    // The person has answered once a callback is accepted: the wait's clock stops, so the page never
    // says "Signed in" for a login the terminal already gave up on. The exchange has its own timeouts.
    const answered = Promise.withResolvers<void>();
    const provider = sanitize(new URL(as.issuer).host);
    const start = `http://${redirect.host}:${listener.port}${startPath()}`;
    // Everything else goes to the terminal only when it helps: the browser may be elsewhere, or none opens.
    const pasting = someoneHere(deps) && deps.readLines !== undefined &&
      (!!flow.remote || config.verbose || !openBrowser);
    const line = waitingLine(config, deps, pasting);
    const handler = callbackHandler({
      hosts: hostsFor(redirect, listener.port),
      path: redirect.path,
      state: request.state,
      startPath: new URL(start).pathname,
      authorizationUrl: startTarget(authorization, deps, line.note, pasting),
      accept: async (callback) => {
        answered.resolve();
        try {
          const result = await exchangeCode(issuer, callback, request, deps, trace);
          resolve(result);
          return resultPage(result, provider, deps);
        } catch (error) {
          reject(error);
          return resultPage(error, provider, deps);
        }
      },
    });
    listener.handle(handler);
    let notOpened: string | undefined;
    announce({ authorization, start: openBrowser ? start : undefined, pasting }, request, deps, (reason) => {
      notOpened = reason;
      if (!someoneHere(deps)) reject(noBrowser(config, reason, as.device_authorization_endpoint !== undefined));
      else line.note(`warning: Cannot open a browser (${reason}); open the address above yourself`);
    });
    line.start();
    if (pasting) {
      const renew = authorization.push && authorization.elsewhere === authorization.url
        ? pushedElsewhere(authorization, line.note)
        : undefined;
      acceptPastedAddresses(deps.readLines!(), handler, outcome, deps, { prompt: line.prompt, renew });
    }
    try {
      return (await wait(deps, {
        ms: config.timeoutMs,
        until: outcome,
        stopClock: answered.promise,
        interrupted: "Login cancelled",
        tick: line.tick,
        onTimeout: () =>
          browserTimeout(config, deps, {
            redirectUri: request.redirectUri,
            checked: authorization.checked,
            notOpened,
            deviceOffered: as.device_authorization_endpoint !== undefined,
          }),
      }))!;
    } finally {
      line.done();
    }
  } finally {
    await listener.close();
  }
}

/** A fresh authorization request: PKCE verifier, `state` and (for OpenID, with an issuer to check the ID token) `nonce`. */
function newRequest(
  oauth: typeof Oauth,
  scope: string,
  redirectUri: string,
  config: Pick<Config, "resources">,
  noIssuer: boolean,
): PendingRequest {
  return {
    scope,
    redirectUri,
    verifier: oauth.generateRandomCodeVerifier(),
    state: oauth.generateRandomState(),
    // Without an issuer no ID token can be checked (it is left out), so no nonce is sent for one.
    nonce: scopeList(scope).includes("openid") && !noIssuer ? oauth.generateRandomNonce() : undefined,
    resource: config.resources?.[0],
  };
}

/**
 * What the start address redirects to on each visit (RFC 9126 §4: a `request_uri` may be used once,
 * and expires): a pushed request is pushed again, with the same `state`, PKCE verifier and nonce,
 * once it has been handed out or its `expires_in` has run out; a request in the URL never changes.
 * `pasting`: the terminal offers the pushed address to another machine, so the start address never
 * hands out that one (two browsers, one single-use `request_uri`). A failed push is said on the
 * terminal (`note`) and on the browser's page.
 */
function startTarget(
  authorization: AuthorizationAddress,
  deps: Pick<Deps, "now">,
  note: (text: string) => void,
  pasting = false,
): () => Promise<string> {
  const offeredElsewhere = pasting && authorization.push !== undefined && authorization.elsewhere === authorization.url;
  let current = { url: authorization.url, expiresAt: authorization.expiresAt ?? Infinity, used: offeredElsewhere };
  return async () => {
    if (authorization.push && (current.used || deps.now() >= current.expiresAt)) {
      try {
        current = { ...await authorization.push(), used: false };
      } catch (error) {
        const why = error instanceof Error ? error.message : String(error);
        note(`warning: Cannot renew the sign-in request for the browser: ${sanitize(why)}`);
        throw error;
      }
    }
    current.used = true;
    return current.url.href;
  };
}

/**
 * Paste-back where the server requires pushed requests, so the address for another machine expires:
 * Enter on an empty line pushes a fresh one and prints it.
 */
function pushedElsewhere(authorization: AuthorizationAddress, note: (text: string) => void): () => Promise<void> {
  return async () => {
    try {
      const { url, expiresAt } = await authorization.push!();
      authorization.elsewhere = url;
      authorization.expiresAt = expiresAt;
      note(`A new address for the other machine:\n\n${url.href}\n`);
    } catch (error) {
      note(`warning: Cannot make a new address: ${sanitize(error instanceof Error ? error.message : String(error))}`);
    }
  };
}

/**
 * What the terminal says before the wait: the browser is opening (and the short address to visit),
 * or the address to open; what was sent when the server's answer could not tell; and, when pasting is
 * offered, the address that works in a browser on another machine. `onOpenFailed` gets the reason
 * when the browser cannot be opened.
 */
function announce(
  how: { authorization: AuthorizationAddress; start?: string; pasting: boolean },
  sent: { redirectUri: string },
  deps: Deps,
  onOpenFailed: (reason: string) => void,
): void {
  const { authorization, start } = how;
  const where = sanitize(authorization.url.host);
  const elsewhere = authorization.elsewhere;
  // An address for another machine that expires (the server requires pushed requests) says so.
  const lasts = elsewhere === authorization.url && authorization.expiresAt !== undefined
    ? ` It can be used once, for about ${seconds(Math.max(1000, authorization.expiresAt - deps.now()))}: ` +
      "press Enter here for a new one."
    : "";
  if (start) {
    say(deps, `Opening your browser to sign in at ${where} ...`);
    say(deps, `If it does not open, visit: ${start}`);
    // Not awaited: an opener that hangs must not hold up the login, its timeout or Ctrl-C.
    deps.openUrl(start).catch((error) => onOpenFailed(sanitize(error instanceof Error ? error.message : error)));
  } else {
    say(deps, `To sign in at ${where}, open this address in a browser:\n\n  ${elsewhere.href}\n`);
  }
  if (!authorization.checked) {
    say(
      deps,
      `note: The server's answer cannot tell whether it accepts this client; if the browser shows an error, check the client id "${
        sanitize(authorization.url.searchParams.get("client_id") ?? "")
      }" and the redirect URI ${sanitize(sent.redirectUri)}`,
    );
  }
  if (how.pasting && start) {
    say(
      deps,
      // The address alone on its line, unindented: a terminal selects it whole.
      `If that browser runs on another machine, open this address there instead:\n\n${elsewhere.href}\n\n` +
        `The page it ends on will not load there: paste its address here and press Enter.${lasts}`,
    );
  } else if (how.pasting) {
    say(
      deps,
      `If that browser runs on another machine, the page it ends on will not load: paste its address here and press Enter.${lasts}`,
    );
  }
}

/**
 * The line that shows the browser flow is waiting: on a terminal, the time left, updated each second
 * (above the paste prompt when there is one); otherwise one static line. Nothing with `--quiet`.
 * `note` prints a line above it (the countdown and prompt are drawn again below).
 */
function waitingLine(
  config: Config,
  deps: Deps,
  pasting: boolean,
): {
  start: () => void;
  tick?: (leftMs: number) => void;
  prompt: () => void;
  note: (text: string) => void;
  done: () => void;
} {
  const text = (left: number) => `Waiting for the browser: ${clockText(left)} left (Ctrl-C cancels)`;
  const promptText = "Paste the address here: ";
  const note = (line: string) => say(deps, line);
  if (config.quiet) return { start: () => {}, prompt: () => {}, note, done: () => {} };
  if (!deps.animate) {
    const prompt = () => pasting && deps.stderr(promptText);
    return {
      start: () => {
        say(deps, `Waiting for the browser for up to ${seconds(config.timeoutMs)} (Ctrl-C cancels)`);
        prompt();
      },
      prompt,
      note: (line) => {
        if (pasting) deps.stderr("\n"); // the prompt's line is left as it is
        say(deps, line);
        prompt();
      },
      done: () => {},
    };
  }
  let shown = false;
  let left = config.timeoutMs;
  let cleared = false;
  const draw = () => {
    deps.stderr(pasting ? `${text(left)}\n${promptText}` : `\r\x1b[2K${text(left)}`);
    shown = true;
  };
  const clear = () => deps.stderr(pasting ? "\r\x1b[2K\x1b[1A\r\x1b[2K" : "\r\x1b[2K");
  return {
    start: () => {},
    tick: (ms) => {
      left = ms;
      if (!shown) draw();
      else if (!pasting) deps.stderr(`\r\x1b[2K${text(ms)}`);
      else deps.stderr(`\x1b7\x1b[1A\r\x1b[2K${text(ms)}\x1b8`); // the line above the prompt; what is typed stays
    },
    prompt: draw, // after a line of its own (a warning): the countdown and the prompt again, below it
    note: (line) => {
      if (!shown || cleared) return say(deps, line);
      clear();
      say(deps, line);
      draw();
    },
    done: () => {
      if (cleared || !shown) return;
      cleared = true;
      clear();
    },
  };
}

/**
 * Paste-back: each address typed on stdin goes through the callback server's own handler, with the
 * same checks as a redirect (Host, path, state, then iss and error); one code path, not two. With
 * `renew`, an empty line asks for a fresh address for the other machine.
 */
function acceptPastedAddresses(
  lines: AsyncIterable<string>,
  handler: (request: Request) => Promise<Response>,
  outcome: Promise<unknown>,
  deps: Deps,
  { prompt = () => {}, renew }: { prompt?: () => void; renew?: () => Promise<void> } = {},
): void {
  let settled = false;
  outcome.then(() => settled = true, () => settled = true);
  (async () => {
    for await (const line of lines) {
      if (settled) return;
      const text = line.trim();
      if (!text && renew) await renew(); // Enter alone: a fresh address for the other machine
      if (!text) continue;
      const url = parseUrl(text);
      if (!url || url.protocol !== "http:") {
        say(deps, "warning: That is not an address; paste the whole address from the browser's address bar");
        prompt();
        continue;
      }
      const response = await handler(new Request(url.href, { headers: { host: url.host } }));
      await response.body?.cancel();
      await Promise.resolve(); // let the outcome settle first when this address completed the sign-in
      if (settled) return;
      say(
        deps,
        response.status === 404
          ? "warning: That is not the sign-in callback address; paste the address the browser ended on"
          : "warning: That address does not belong to the sign-in in progress, so it was ignored; paste the address the browser ended on",
      );
      prompt();
    }
  })().catch((error) => say(deps, `warning: Cannot read what was pasted: ${sanitize((error as Error).message)}`));
}

/** The device flow's polling interval when the server names none, and what each slow_down adds (RFC 8628 §3.5). */
const DEVICE_INTERVAL_MS = 5_000;

const SLOW_DOWN_MS = 5_000;

/** The device flow polls at least 1 s and at most 5 minutes apart, whatever the server says. */
const MIN_DEVICE_INTERVAL_MS = 1_000;

const MAX_DEVICE_INTERVAL_MS = 5 * 60_000;

/** A device code whose `expires_in` is not a positive number is taken to live this long (RFC 8628 §3.2's example). */
const DEVICE_CODE_LIFETIME_S = 1800;

/**
 * The device flow waits at most this long unless `--timeout` says otherwise, however long the server
 * says the code lives (an `expires_in` of a year would keep it polling for one): 30 minutes.
 */
const DEVICE_WAIT_MS = 30 * 60_000;

/** Waits `ms` between polls (Ctrl-C ends it), showing a countdown to `deadline` when stderr is a terminal. */
async function pollPause(ms: number, deadline: number, config: Config, deps: Deps): Promise<void> {
  const countdown = deps.animate && !config.quiet;
  await wait(deps, {
    ms,
    sleep: deps.sleep,
    interrupted: "Login cancelled",
    tick: countdown
      ? () =>
        deps.stderr(
          `\r\x1b[2KWaiting for you to approve: ${clockText(deadline - deps.now())} left (Ctrl-C cancels)`,
        )
      : undefined,
  });
}

/** The device authorization grant (RFC 8628): a code to type on any device, then polling. */
async function deviceLogin({ issuer, scope, config, deps, openBrowser, trace }: FlowContext): Promise<SignInResult> {
  const oauth = await lib();
  const device = await startDeviceFlow(oauth, issuer, scope, config);
  await showDeviceCode(device, issuer.as, { deps, config, trace }, openBrowser);
  return await pollDeviceCode(oauth, { issuer, scope, config, deps, trace }, device);
}

/**
 * Starts the device flow (RFC 8628 §3.1-3.2): the device authorization request with scope and --param.
 * Throws LoginError("config") when the server has no device endpoint or refuses the client or scope.
 */
async function startDeviceFlow(
  oauth: typeof Oauth,
  issuer: IssuerClient,
  scope: string,
  config: Config,
): Promise<Oauth.DeviceAuthorizationResponse> {
  const { as, client, http } = issuer;
  if (as.device_authorization_endpoint === undefined) {
    throw new LoginError(
      "config",
      "The server does not offer the device flow (its metadata has no device_authorization_endpoint)",
      {
        hint: "use --flow browser",
      },
    );
  }
  assertEndpoint(as.device_authorization_endpoint, "device_authorization_endpoint", as.issuer);
  const parameters = new URLSearchParams([...(scope ? [["scope", scope]] : []), ...config.params]);
  let device: Oauth.DeviceAuthorizationResponse;
  try {
    device = await step("start the device flow", async () => {
      const auth = issuer.authTo(as.device_authorization_endpoint);
      const response = await oauth.deviceAuthorizationRequest(as, client, auth, parameters, http);
      return await oauth.processDeviceAuthorizationResponse(as, client, response);
    });
  } catch (error) {
    // The client or scope is wrong: a configuration error, as for the browser flow's request (exit 2).
    if (
      error instanceof ErrorResponse && ["invalid_client", "invalid_scope", "unauthorized_client"].includes(error.code)
    ) {
      const hint = error.code === "invalid_client" ? clientRefusedHint(config, issuer.authMethod) : error.hint;
      throw new LoginError("config", error.message, { hint, cause: error });
    }
    throw error;
  }
  return device;
}

/**
 * Shows the device flow's verification address and user code (RFC 8628 §3.3), opening the address if
 * asked; on a terminal (and without --quiet), a QR code of `verification_uri_complete` (else
 * `verification_uri`) beside the code, for a phone's camera (RFC 8628 §3.3.1).
 */
async function showDeviceCode(
  device: Oauth.DeviceAuthorizationResponse,
  as: Oauth.AuthorizationServer,
  { deps, config, trace }: Pick<FlowContext, "deps" | "config" | "trace">,
  openBrowser: boolean,
): Promise<void> {
  const verification = deviceAddress(device.verification_uri, "verification_uri", as.issuer);
  const withCode = device.verification_uri_complete === undefined
    ? undefined
    : deviceAddress(device.verification_uri_complete, "verification_uri_complete", as.issuer);
  if (config.trust?.decidedBy === ".env") checkProjectDeviceAddress(verification, as, config, deps.presetBase);
  // The address that carries the code only on the host the person is told to check: a QR code hides where it leads.
  const verificationComplete = withCode?.host === verification.host ? withCode : undefined;
  if (withCode && !verificationComplete) {
    trace?.(
      `verification_uri_complete is on ${sanitize(withCode.host)}, not ${sanitize(verification.host)}: not shown`,
    );
  }
  const code = sanitize(device.user_code, 40);
  say(
    deps,
    `To sign in, open this address on any device (a phone will do):\n\n  ${sanitize(verification.href)}\n\n` +
      `and enter the code:\n\n  ${code}\n\n` +
      (verificationComplete
        ? `Or open this address, which carries the code: ${sanitize(verificationComplete.href)}\n`
        : "") +
      `Check that the address is your provider's (${sanitize(verification.host)}) before you enter the code.`,
  );
  if (deps.stderrIsTerminal && !config.quiet) {
    const qr = await qrCode((verificationComplete ?? verification).href, trace);
    const caption = verificationComplete
      ? ["Or scan this with a phone:", "it opens the address with", `the code ${code} filled in.`]
      : ["Or scan this with a phone", `to open the address, and enter`, `the code ${code} there.`];
    // A server's address long enough to make a code wider than the terminal gets none: it could not be scanned.
    const columns = deps.columns ?? 80;
    if (qr && [...qr[0]].length + 2 <= columns) deps.stderr(`\n${beside(qr, caption, columns)}\n`);
  }
  // Never the address that carries the code: an opener's arguments are there for any local user to read
  // (/proc/PID/cmdline), and with the code another user could approve the sign-in with an account of theirs.
  if (openBrowser) deps.openUrl(verification.href).catch(() => {}); // a convenience: the code is printed anyway
}

/**
 * `text` as a QR code for a terminal, two rows of modules to a line (half blocks, light modules drawn,
 * as for a dark background; phones read both ways), by `npm:qr` (encoding is not ours to write),
 * loaded only here. Undefined when it cannot be loaded (offline, with nothing cached): the address
 * and the code are printed anyway.
 */
async function qrCode(text: string, trace?: Trace): Promise<string[] | undefined> {
  try {
    const { default: encodeQR } = await import("npm:qr@0.7.0");
    return encodeQR(text, "ascii", { ecc: "low" }).split("\n").filter((line) => line !== "");
  } catch (error) {
    trace?.(`no QR code: ${sanitize(error instanceof Error ? error.message : error)}`);
    return undefined;
  }
}

/** Lines of `left` with `right` beside them, vertically centred, two spaces in; below it when too wide. Pure. */
function beside(left: string[], right: string[], columns: number): string {
  const width = Math.max(...left.map((line) => [...line].length));
  const pad = (line: string) => `  ${line}${" ".repeat(width - [...line].length)}`;
  if (width + 6 + Math.max(...right.map((line) => line.length)) > columns) {
    return [...left.map(pad), "", ...right.map((line) => `  ${line}`)].join("\n");
  }
  const top = Math.max(0, Math.floor((left.length - right.length) / 2));
  return left.map((line, i) => `${pad(line)}  ${right[i - top] ?? ""}`.trimEnd()).join("\n");
}

/**
 * An address from the device authorization answer (RFC 8628 §3.2), checked before it is shown or
 * opened: https, or http only on a loopback host of a loopback issuer (`assertEndpoint`). Throws
 * LoginError("invalid_response") otherwise, with the way out.
 */
function deviceAddress(value: unknown, name: string, issuer: string): URL {
  try {
    return assertEndpoint(value, name, issuer);
  } catch (error) {
    if (!(error instanceof LoginError)) throw error;
    const message = error.message.replace("The server's metadata has", "The server's device authorization answer has");
    throw new LoginError("invalid_response", message, { hint: "use --flow browser", cause: error });
  }
}

/**
 * Polls the token endpoint with the device code (RFC 8628 §3.4-3.5) until approved, at the server's interval
 * (milliseconds, slowed by slow_down and network errors). Throws LoginError("timeout") when the time runs out.
 */
async function pollDeviceCode(
  oauth: typeof Oauth,
  { issuer, scope, config, deps, trace }: Pick<FlowContext, "issuer" | "scope" | "config" | "deps" | "trace">,
  device: Oauth.DeviceAuthorizationResponse,
): Promise<SignInResult> {
  const { as, client, auth, http } = issuer;
  const lifetimeMs = clampLifetime(statedSeconds(device.expires_in) ?? DEVICE_CODE_LIFETIME_S) * 1000;
  // The earlier of the code's own lifetime and `--timeout`, or without it DEVICE_WAIT_MS.
  const limitMs = config.sources.timeout !== undefined ? config.timeoutMs : DEVICE_WAIT_MS;
  const bounded = limitMs < lifetimeMs;
  const deadline = deps.now() + (bounded ? limitMs : lifetimeMs);
  const pace = (ms: number) => Math.min(Math.max(ms, MIN_DEVICE_INTERVAL_MS), MAX_DEVICE_INTERVAL_MS);
  let interval = pace((statedSeconds(device.interval) ?? DEVICE_INTERVAL_MS / 1000) * 1000);
  const expired = () =>
    bounded
      ? new LoginError(
        "timeout",
        `The sign-in was not approved within ${seconds(limitMs)}${
          config.sources.timeout !== undefined ? " (--timeout)" : ""
        }`,
        {
          hint: `run "${command(deps, "login")}${
            loginFlags(config)
          }" again and enter the code in time, or give more time with --timeout SECONDS`,
        },
      )
      : new LoginError("timeout", "The code expired before the sign-in was approved", {
        hint: "run the login again and enter the code within the time shown",
      });
  if (!deps.animate && !config.quiet) {
    say(deps, `Waiting for you to approve, for up to ${seconds(deadline - deps.now())} (Ctrl-C cancels)`);
  }
  try {
    for (;;) {
      await pollPause(Math.min(interval, Math.max(0, deadline - deps.now())), deadline, config, deps);
      if (deps.now() >= deadline) throw expired();
      try {
        const tokens = await step("sign in with the device code", () =>
          onceMoreForNonce(issuer, async () => {
            const response = await oauth.deviceCodeGrantRequest(as, client, auth, device.device_code, http);
            return await processTokens(response, deps.now(), (r) => oauth.processDeviceCodeResponse(as, client, r));
          }));
        const who = await identify(issuer, tokens, trace);
        return { tokens, metadata: as, authMethod: issuer.authMethod, scope, ...who };
      } catch (error) {
        if (error instanceof ErrorResponse && error.code === "authorization_pending") continue;
        if (error instanceof ErrorResponse && error.code === "slow_down") {
          interval = pace(interval + SLOW_DOWN_MS); // for this and every later poll
          continue;
        }
        if (error instanceof ErrorResponse && error.code === "expired_token") throw expired();
        if (error instanceof LoginError && error.code === "network") {
          interval = pace(interval * 2); // RFC 8628 §3.5: back off when the server cannot be reached
          trace?.(`polling again in ${seconds(interval)}: ${error.message}`);
          continue;
        }
        throw error;
      }
    }
  } finally {
    if (deps.animate && !config.quiet) deps.stderr("\r\x1b[2K");
  }
}

// ── 15 The code exchange and who logged in ─────────────────────────────────────────────────────────────────────────

/** A server clock further than this from ours (ms) is named when an ID token is refused for its times. */
const CLOCK_SKEW_NOTICE_MS = 60_000;

/**
 * Runs oauth4webapi's processing of a token endpoint response (RFC 6749 §5.1) with three additions.
 * An access token that is not RFC 6750 `b64token` syntax is refused (`B64TOKEN`).
 * `expires_in` is kept out of its hands and put back as sent afterwards: oauth4webapi refuses a
 * negative or non-numeric one outright, where `accessTokenExpiry` treats it as not stated and falls
 * back. And when an ID token is refused for its `iat`/`exp` while the server's `Date` header is more
 * than a minute from `now` (ms), the error says the local clock looks off, and by how much.
 */
async function processTokens(
  response: Response,
  now: number,
  process: (response: Response) => Promise<Oauth.TokenEndpointResponse>,
): Promise<Oauth.TokenEndpointResponse> {
  let expiresIn: unknown;
  if (response.status === 200) {
    let body = await response.text();
    try {
      const json = JSON.parse(body);
      if (json && typeof json === "object" && !Array.isArray(json) && Object.hasOwn(json, "expires_in")) {
        expiresIn = json.expires_in;
        delete json.expires_in;
        body = JSON.stringify(json);
      }
    } catch { /* not JSON: oauth4webapi says so */ }
    response = new Response(body, { status: response.status, headers: response.headers });
  }
  try {
    const tokens = await process(response);
    if (!B64TOKEN.test(tokens.access_token)) {
      // Not saved, printed or sent: in a header it would add to the header, or add one (RFC 6750 §2.1).
      throw new LoginError(
        "invalid_response",
        "The server sent an access token that cannot be used in an HTTP header",
        {
          hint:
            "it has characters RFC 6750 does not allow in a token (a space, a line break, ...): report it to the server's operator",
        },
      );
    }
    if (expiresIn !== undefined) (tokens as Record<string, unknown>).expires_in = expiresIn;
    return tokens;
  } catch (error) {
    const oauth = await lib();
    const serverTime = Date.parse(response.headers.get("date") ?? "");
    const skew = now - serverTime;
    if (
      error instanceof oauth.OperationProcessingError && error.code === oauth.JWT_TIMESTAMP_CHECK &&
      Math.abs(skew) > CLOCK_SKEW_NOTICE_MS
    ) {
      throw new LoginError(
        "invalid_response",
        `The ID token was refused for its issue or expiry time, and the local clock looks off: it is ${
          roughDuration(skew)
        } ${skew > 0 ? "ahead of" : "behind"} the server's`,
        { hint: "set this computer's clock right (turn on automatic time), then try again", cause: error },
      );
    }
    throw error;
  }
}

/** The code exchange's options: with several resources asked for, the first is the access token's (RFC 8707 §2.2). */
function withResource(http: Http, resource: string | undefined): Http {
  return resource ? { ...http, additionalParameters: { resource } } as Http : http;
}

/**
 * Checks the callback (`validateAuthResponse`: state, iss, error), exchanges the code with the
 * PKCE verifier (RFC 6749 §4.1.3, RFC 7636 §4.5), validates the ID token's nonce, and finds out who
 * logged in. Throws `ErrorResponse` with the server's answer, or `LoginError`.
 */
async function exchangeCode(
  issuer: IssuerClient,
  callback: URLSearchParams,
  request: PendingRequest,
  deps: Deps,
  trace?: Trace,
): Promise<SignInResult> {
  const oauth = await lib();
  const { as, client, auth, http } = issuer;
  if ((as as Record<string, unknown>)[NO_ISSUER] === true && callback.has("iss")) {
    // With endpoints alone there is no issuer to hold it against (pass --issuer to have it checked).
    trace?.(`the callback's iss "${sanitize(callback.get("iss"))}" is not checked: no issuer is configured`);
    callback.delete("iss");
  }
  const validated = await step(
    "accept the sign-in",
    () => oauth.validateAuthResponse(as, client, callback, request.state),
  );
  const tokens = await step("exchange the authorization code", () =>
    onceMoreForNonce(issuer, async () => {
      const response = await oauth.authorizationCodeGrantRequest(
        as,
        client,
        auth,
        validated,
        request.redirectUri,
        request.verifier,
        withResource(http, request.resource),
      );
      return await processTokens(
        response,
        deps.now(),
        (r) =>
          oauth.processAuthorizationCodeResponse(as, client, r, {
            expectedNonce: request.nonce ?? oauth.expectNoNonce,
          }),
      );
    }));
  const who = await identify(issuer, tokens, trace);
  return { tokens, metadata: as, authMethod: issuer.authMethod, scope: request.scope, ...who };
}

/** Says who logged in: introspection, else the ID token's claims, else UserInfo. */
async function identify(
  issuer: IssuerClient,
  tokens: Oauth.TokenEndpointResponse,
  trace?: Trace,
): Promise<{ user?: string; subject?: string }> {
  const oauth = await lib();
  const { as, client, http } = issuer;
  let introspected: string | undefined; // the sub introspection gave, when it gave no username
  if (as.introspection_endpoint && issuer.authMethod !== "none") {
    try {
      const auth = issuer.authTo(as.introspection_endpoint);
      const response = await oauth.introspectionRequest(as, client, auth, tokens.access_token, http);
      const info = await oauth.processIntrospectionResponse(as, client, response);
      if (info.active === true) {
        if (typeof info.username === "string" && info.username) return { user: info.username, subject: info.sub };
        introspected = info.sub; // RFC 7662 makes username optional: look for a name below
      }
    } catch (error) {
      trace?.(`introspection gave no name: ${sanitize(((await explain(error, "introspect")) as Error).message)}`);
    }
  }
  const claims = oauth.getValidatedIdTokenClaims(tokens);
  const fromClaims = (c: Record<string, unknown>) =>
    (issuer.userClaim ? [c[issuer.userClaim]] : [c.preferred_username, c.email, c.name])
      .map((v) => typeof v === "number" ? String(v) : v)
      .find((v): v is string => typeof v === "string" && v !== "");
  if (claims && fromClaims(claims)) return { user: fromClaims(claims), subject: claims.sub };
  if (as.userinfo_endpoint) {
    try {
      const response = await oauth.userInfoRequest(as, client, tokens.access_token, http);
      const expected = claims?.sub ?? introspected ?? oauth.skipSubjectCheck;
      if (issuer.whoAmI) {
        // Any JSON "who am I" answer (GitHub's /user, Spotify's /v1/me): no `sub` needed; its `id` serves.
        const info = await readWhoAmI(response);
        const subject = typeof info.sub === "string"
          ? info.sub
          : typeof info.id === "string" || typeof info.id === "number"
          ? String(info.id)
          : undefined;
        if (typeof expected === "string" && info.sub !== undefined && info.sub !== expected) {
          throw new LoginError("invalid_response", "The UserInfo answer names another subject than the ID token");
        }
        return { user: fromClaims(info) ?? subject, subject: subject ?? claims?.sub };
      }
      const info = await oauth.processUserInfoResponse(as, client, expected, response);
      const user = fromClaims(info) ?? info.sub;
      return { user, subject: info.sub };
    } catch (error) {
      trace?.(`userinfo gave no name: ${sanitize(((await explain(error, "fetch userinfo")) as Error).message)}`);
    }
  }
  const subject = claims?.sub ?? introspected;
  return { user: subject, subject };
}

/** Reads a "who am I" answer: HTTP 200 and a JSON object. */
async function readWhoAmI(response: Response): Promise<Record<string, unknown>> {
  if (response.status !== 200) {
    await response.body?.cancel();
    throw new LoginError("invalid_response", `The UserInfo endpoint answered HTTP ${response.status}`);
  }
  const info = await response.json().catch(() => undefined);
  if (!info || typeof info !== "object" || Array.isArray(info)) {
    throw new LoginError("invalid_response", "The UserInfo endpoint did not answer with a JSON object");
  }
  return info;
}

// ── 16 Logins without a person: client credentials, JWT bearer, token exchange, subject token sources ──────────────

/**
 * The grants a machine signs in with, by the names `--grant` takes, and their `grant_type`: client
 * credentials (RFC 6749 §4.4), a JWT bearer assertion (RFC 7523 §2.1), token exchange (RFC 8693 §2.1).
 */
const GRANT_TYPES = {
  client_credentials: "client_credentials",
  "jwt-bearer": "urn:ietf:params:oauth:grant-type:jwt-bearer",
  "token-exchange": "urn:ietf:params:oauth:grant-type:token-exchange",
} as const;

/** A grant without a person. */
type Grant = NonNullable<Config["grant"]>;

/** RFC 8693 §3's token type identifiers: this prefix and a short name. */
const TOKEN_TYPE_PREFIX = "urn:ietf:params:oauth:token-type:";

/** The short names of RFC 8693 §3's token types, which `--subject-token-type` and the others take. */
const TOKEN_TYPE_NAMES = ["jwt", "id_token", "access_token", "refresh_token", "saml1", "saml2"];

/** The projected service account token of a Kubernetes pod, where the kubelet keeps it fresh. */
const KUBERNETES_TOKEN_PATH = "/var/run/secrets/kubernetes.io/serviceaccount/token";

/** The most of a subject or actor token read from a file or stdin (a JWT is a few KiB). */
const MAX_SOURCE_BYTES = 64 * 1024;

/** Where a subject or actor token comes from (`--subject-token-from`), parsed (see `parseTokenSource`). */
type TokenSource =
  | { kind: "github-actions" }
  | { kind: "gitlab"; variable: string }
  | { kind: "kubernetes"; path: string }
  | { kind: "file"; path: string }
  | { kind: "env"; variable: string }
  | { kind: "stdin" };

/** The forms a token source takes, for hints. */
const SOURCE_FORMS = "github-actions, gitlab:VAR, kubernetes[:PATH], file:PATH, env:NAME or - (stdin)";

/** `--grant`'s value as a grant: its names, `client-credentials`, or a `grant_type` URN. Throws a usage LoginError. Pure. */
function parseGrant(text: string): Grant {
  const name = text === "client-credentials" ? "client_credentials" : text;
  if (Object.hasOwn(GRANT_TYPES, name)) return name as Grant;
  const byUrn = (Object.keys(GRANT_TYPES) as Grant[]).find((grant) => GRANT_TYPES[grant] === text);
  if (byUrn) return byUrn;
  throw new LoginError("usage", `The grant "${sanitize(text)}" is not one this tool makes`, {
    hint: "use client_credentials, jwt-bearer or token-exchange (a person signs in without --grant)",
  });
}

/** A token source as written (`kubernetes:/path`, `env:NAME`, ...); `flag` names it in the error. Throws a usage LoginError. Pure. */
function parseTokenSource(text: string, flag: string): TokenSource {
  const [kind, ...rest] = text.split(":");
  const value = rest.join(":");
  if (text === "github-actions") return { kind: "github-actions" };
  if (text === "-" || text === "stdin") return { kind: "stdin" };
  if (text === "kubernetes") return { kind: "kubernetes", path: KUBERNETES_TOKEN_PATH };
  const variable = /^[A-Za-z_][A-Za-z0-9_]*$/.test(value);
  if (kind === "gitlab" && variable) return { kind: "gitlab", variable: value };
  if (kind === "env" && variable) return { kind: "env", variable: value };
  if (kind === "kubernetes" && value) return { kind: "kubernetes", path: value };
  if (kind === "file" && value) return { kind: "file", path: value };
  throw new LoginError("usage", `The token source "${sanitize(text)}" (--${flag}) is not one this tool reads`, {
    hint: kind === "gitlab"
      ? "name the variable your job's id_tokens: block defines, e.g. gitlab:OAUTH_ID_TOKEN"
      : `use ${SOURCE_FORMS}`,
  });
}

/** The settings of a grant without a person that are part of an entry's key (see `cacheKey`). */
const GRANT_KEYS = [
  "grant",
  "subjectTokenFrom",
  "subjectTokenType",
  "requestedTokenType",
  "subjectAudience",
  "actorTokenFrom",
  "actorTokenType",
] as const;

type GrantKey = typeof GRANT_KEYS[number];

/** A source as messages and `whoami` name it: `github-actions`, `kubernetes:/path`, `stdin`. Pure. */
function describeSource(source: TokenSource): string {
  switch (source.kind) {
    case "github-actions":
      return "github-actions";
    case "stdin":
      return "stdin";
    case "gitlab":
    case "env":
      return `${source.kind}:${source.variable}`;
    default:
      return `${source.kind}:${source.path}`;
  }
}

/** A token type as RFC 8693 §3 writes it: a short name (`jwt`) becomes its URI; a URI stays. Throws a usage LoginError. Pure. */
function tokenTypeUri(text: string, flag: string): string {
  if (TOKEN_TYPE_NAMES.includes(text)) return `${TOKEN_TYPE_PREFIX}${text}`;
  if (/^[a-z][a-z0-9+.-]*:\S+$/i.test(text)) return text;
  throw new LoginError("usage", `The token type "${sanitize(text)}" (--${flag}) is not a URI`, {
    hint: `use ${TOKEN_TYPE_NAMES.join(", ")} (RFC 8693 §3), or a URI`,
  });
}

/**
 * The settings of a grant without a person, checked: `--grant`, the subject and actor token sources
 * and types, the requested token type and the GitHub Actions audience. A setting that does not apply
 * to the grant is a usage error when given as a flag (and left unused when it comes from elsewhere:
 * the environment may hold settings for other runs). Throws LoginError. Pure.
 */
const resolveGrantConfig = (function resolveGrantConfig(cli: Cli, pick: ConfigPick, trust: Trust): Partial<Config> {
  const { flags } = cli;
  const given = (key: string) =>
    pick(key, flags[flagOf(key)] as string | undefined, (ENV_VARS as Record<string, string>)[key]);
  const grantText = given("grant");
  const takes: Record<string, Grant[]> = {
    subjectTokenFrom: ["jwt-bearer", "token-exchange"],
    subjectTokenType: ["token-exchange"],
    requestedTokenType: ["token-exchange"],
    actorTokenFrom: ["token-exchange"],
    actorTokenType: ["token-exchange"],
    subjectAudience: ["jwt-bearer", "token-exchange"],
  };
  const grant = grantText === undefined ? undefined : parseGrant(grantText);
  for (const [key, grants] of Object.entries(takes)) {
    if (flags[flagOf(key)] === undefined || (grant && grants.includes(grant))) continue;
    throw new LoginError("usage", `The flag "--${flagOf(key)}" applies only to --grant ${grants.join(" or ")}`);
  }
  if (!grant) return {};
  const signIn = (["acr-values", "max-age"] as const).find((flag) => flags[flag] !== undefined);
  if (signIn) {
    throw new LoginError(
      "usage",
      `The flag "--${signIn}" applies only when a person signs in, not to --grant ${grant}`,
      {
        hint: "a grant without a person has no sign-in to make stronger or newer (RFC 9470)",
      },
    );
  }
  const subjectText = takes.subjectTokenFrom.includes(grant) ? given("subjectTokenFrom") : undefined;
  if (!subjectText && grant !== "client_credentials") {
    const withheld = trust.withheld.some(({ name }) => name === ENV_VARS.subjectTokenFrom);
    throw new LoginError("config", `The ${grant} grant needs a subject token, and none is configured`, {
      hint: withheld
        ? `set ${ENV_VARS.issuer} in the environment too if your ${ENV_VARS.subjectTokenFrom} is meant for this server`
        : `pass --subject-token-from SOURCE (${SOURCE_FORMS})`,
    });
  }
  const exchange = grant === "token-exchange";
  const actorText = exchange ? given("actorTokenFrom") : undefined;
  const subject = subjectText === undefined ? undefined : parseTokenSource(subjectText, "subject-token-from");
  const actor = actorText === undefined ? undefined : parseTokenSource(actorText, "actor-token-from");
  if (subject?.kind === "stdin" && actor?.kind === "stdin") {
    throw new LoginError("usage", "The subject and the actor token cannot both be read from stdin (-)");
  }
  if ((subject?.kind === "stdin" || actor?.kind === "stdin") && flags.data === "@-") {
    throw new LoginError("usage", "Stdin cannot give both the request body (-d @-) and a token (-)");
  }
  const audience = subject?.kind === "github-actions" || actor?.kind === "github-actions"
    ? given("subjectAudience")
    : undefined;
  if (flags["subject-audience"] !== undefined && audience === undefined) {
    throw new LoginError("usage", 'The flag "--subject-audience" applies only to a github-actions token source', {
      hint: "GitLab and Kubernetes set a token's audience where the token is made (id_tokens:, the projection)",
    });
  }
  const type = (key: string, flag: string) => {
    const text = exchange ? given(key) : undefined;
    return text === undefined ? undefined : tokenTypeUri(text, flag);
  };
  return {
    grant,
    ...(subject ? { subjectTokenFrom: describeSource(subject) } : {}),
    ...(exchange
      ? { subjectTokenType: type("subjectTokenType", "subject-token-type") ?? `${TOKEN_TYPE_PREFIX}jwt` }
      : {}),
    ...(exchange && type("requestedTokenType", "requested-token-type")
      ? { requestedTokenType: type("requestedTokenType", "requested-token-type") }
      : {}),
    ...(audience ? { subjectAudience: audience } : {}),
    ...(actor
      ? {
        actorTokenFrom: describeSource(actor),
        actorTokenType: type("actorTokenType", "actor-token-type") ?? `${TOKEN_TYPE_PREFIX}jwt`,
      }
      : {}),
  };
}).bind(undefined);

/**
 * Client credentials (RFC 6749 §4.4) are for confidential clients only: without a secret or a key the
 * grant cannot authenticate, so the run stops before any request. Returns the configuration; throws a
 * config LoginError.
 */
const checkGrantClient = (function checkGrantClient(config: Config, trust: Trust): Config {
  if (config.grant !== "client_credentials" || config.clientSecret || config.clientKey) return config;
  if (config.clientAuth && config.clientAuth !== "none") return config; // resolveClientAuth has asked for its secret
  throw new LoginError("config", "The client_credentials grant needs the client's own credentials", {
    hint: withheldSecretHint(trust) ??
      `set ${ENV_VARS.clientSecret}, or pass --client-key FILE (private_key_jwt) for client "${
        sanitize(config.clientId)
      }"`,
  });
}).bind(undefined);

/**
 * Checks a token read from a source before it is sent: one token (no space or line break), at most
 * `MAX_SOURCE_BYTES`, and, when it is a JWT, not expired by its own `exp` at `now` (ms): an expired CI
 * or service account token fails here with what to do, not at the server. Returns it trimmed. Pure.
 */
function checkSourcedToken(text: string, what: string, source: TokenSource, now: number): string {
  const token = text.trim();
  if (token === "") throw new LoginError("config", `The ${what} is empty`);
  if (/\s/.test(token)) {
    throw new LoginError("config", `The ${what} is not one token: it holds spaces or line breaks`, {
      hint: "the source must hold the token alone (a JWT, say), nothing else",
    });
  }
  if (token.length > MAX_SOURCE_BYTES) {
    throw new LoginError("config", `The ${what} is larger than ${byteSize(MAX_SOURCE_BYTES)}`);
  }
  const exp = jwtExpiry(token);
  if (exp !== undefined && exp * 1000 <= now) {
    throw new LoginError("config", `The ${what} expired ${relativeTime(exp * 1000, now)}`, {
      hint: source.kind === "kubernetes"
        ? "the kubelet renews a projected token before it expires: check that the pod's token volume is mounted"
        : source.kind === "github-actions" || source.kind === "gitlab"
        ? "the CI system makes a new one for each job: run the job again"
        : "give a token that has not expired",
    });
  }
  return token;
}

/** A JWT's `sub`, decoded without verifying it: a name to show for the subject, never trusted for anything else. */
function jwtSubject(token: string | undefined): string | undefined {
  const payload = token?.split(".")[1];
  if (!payload || token!.split(".").length !== 3) return undefined;
  try {
    const claims = JSON.parse(atob(payload.replace(/-/g, "+").replace(/_/g, "/")));
    return typeof claims?.sub === "string" && claims.sub !== "" ? claims.sub : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The body of the grant's token request, less `grant_type` and client authentication: `scope`,
 * `resource`s, `audience` and the `--param`s (not the preset's authorization parameters, nor
 * `login_hint`), then the assertion (RFC 7523 §2.1) or the subject and actor tokens and types
 * (RFC 8693 §2.1). Pure.
 */
function grantParameters(config: Config, subject?: string, actor?: string): URLSearchParams {
  const parameters = new URLSearchParams();
  if (config.scope) parameters.set("scope", config.scope);
  const preset = presetOf(config)?.params ?? [];
  for (const [key, value] of config.params) {
    if (key === "login_hint" || preset.some(([k, v]) => k === key && v === value)) continue;
    parameters.append(key, value);
  }
  if (config.grant === "jwt-bearer") parameters.set("assertion", subject!);
  if (config.grant === "token-exchange") {
    parameters.set("subject_token", subject!);
    parameters.set("subject_token_type", config.subjectTokenType!);
    if (config.requestedTokenType) parameters.set("requested_token_type", config.requestedTokenType);
    if (actor !== undefined) {
      parameters.set("actor_token", actor);
      parameters.set("actor_token_type", config.actorTokenType!);
    }
  }
  return parameters;
}

/**
 * A token exchange answer's `issued_token_type` (RFC 8693 §2.2.1): required; the one asked for with
 * `--requested-token-type`, when given; and a token whose `token_type` is `N_A` (not usable as an
 * access token) must not claim to be an access token. Throws an invalid_response LoginError. Pure.
 */
function checkIssuedTokenType(tokens: Record<string, unknown>, config: Pick<Config, "grant" | "requestedTokenType">) {
  if (config.grant !== "token-exchange") return;
  const issued = tokens.issued_token_type;
  if (typeof issued !== "string" || issued === "") {
    throw new LoginError(
      "invalid_response",
      'Cannot exchange the subject token: the answer has no "issued_token_type" (RFC 8693 §2.2.1)',
      { hint: "the server's token exchange does not follow RFC 8693: report it to its operator" },
    );
  }
  if (config.requestedTokenType && issued !== config.requestedTokenType) {
    throw new LoginError(
      "invalid_response",
      `Cannot exchange the subject token: the server issued "${sanitize(issued)}", not the "${
        sanitize(config.requestedTokenType)
      }" asked for`,
      { hint: "nothing was cached; ask for a type the server issues with --requested-token-type" },
    );
  }
  if (tokens.token_type === "n_a" && issued === `${TOKEN_TYPE_PREFIX}access_token`) {
    throw new LoginError(
      "invalid_response",
      'Cannot exchange the subject token: the server issued an access token with the token_type "N_A"',
    );
  }
}

/** The missing-source error: one sentence naming what was looked for, and where to get it. */
function missingSource(message: string, hint: string): LoginError {
  return new LoginError("config", message, { hint });
}

/**
 * Asks GitHub Actions for the job's ID token (GitHub's OIDC token, `{"value": JWT}`): a GET of
 * `ACTIONS_ID_TOKEN_REQUEST_URL` with `audience` set, carrying `ACTIONS_ID_TOKEN_REQUEST_TOKEN` as a
 * bearer token, through the one sender; the token-origin rule applies (https, or http to this machine).
 */
async function githubActionsToken(config: Config, deps: Deps, trace?: Trace): Promise<string> {
  const urlText = deps.env("ACTIONS_ID_TOKEN_REQUEST_URL");
  const bearer = deps.env("ACTIONS_ID_TOKEN_REQUEST_TOKEN");
  const job = 'add "permissions: id-token: write" to the workflow\'s job, or choose another --subject-token-from';
  for (const [name, value] of [["ACTIONS_ID_TOKEN_REQUEST_URL", urlText], ["ACTIONS_ID_TOKEN_REQUEST_TOKEN", bearer]]) {
    if (!value) {
      throw missingSource(
        `${name} is not set: this is not a GitHub Actions job with "permissions: id-token: write"`,
        job,
      );
    }
  }
  const url = parseUrl(urlText!);
  if (!url || tokenRefusal(url)) {
    throw new LoginError(
      "config",
      `ACTIONS_ID_TOKEN_REQUEST_URL is not an https URL, so its request token is not sent there (${
        sanitize(url ? url.origin : urlText)
      })`,
      { hint: "GitHub Actions sets it itself; unset it outside a GitHub Actions job" },
    );
  }
  url.searchParams.set("audience", config.subjectAudience ?? displayIssuer(config.issuer));
  const answer = await send(deps, url, {
    headers: { authorization: `bearer ${bearer}`, accept: "application/json" },
  }, { trace, traceFields: false, urlName: "ACTIONS_ID_TOKEN_REQUEST_URL" });
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder().decode(answer.body))?.value;
  } catch { /* said below */ }
  if (answer.status !== 200 || typeof value !== "string") {
    throw new LoginError(
      answer.status === 200 ? "invalid_response" : "failure",
      `GitHub Actions gave no ID token (HTTP ${answer.status}${
        answer.status === 200 ? ', no "value" in its answer' : ""
      })`,
      { hint: answer.status === 403 || answer.status === 401 ? job : "try the job again" },
    );
  }
  return value;
}

/**
 * Reads a token file (a projected service account token is a link the kubelet swaps: it is followed), at
 * most `MAX_SOURCE_BYTES`. A file someone else could have put there or could change is refused, as the
 * config file is (`trustedFileProblem`): they could put their own token there, and the tool would sign
 * in as them.
 */
async function readTokenFile(path: string, missing: () => LoginError): Promise<string> {
  try {
    const facts = await trustFacts(path);
    // Without the uid (no sys permission) only the modes are checked: /tmp's owner is not the user.
    const problem = trustedFileProblem("token file", path, facts, userId(), "keep the token in a file of your own");
    if (problem) throw problem;
    if (facts.file.size > MAX_SOURCE_BYTES) {
      throw new LoginError("config", `The token file "${sanitize(path)}" is larger than ${byteSize(MAX_SOURCE_BYTES)}`);
    }
    return await Deno.readTextFile(facts.real);
  } catch (error) {
    if (error instanceof LoginError || error instanceof Deno.errors.NotCapable) throw error;
    if (error instanceof Deno.errors.NotFound) throw missing();
    throw new LoginError(
      "config",
      `Cannot read the token file "${sanitize(path)}": ${sanitize((error as Error).message)}`,
      {
        hint: "check that this user may read it",
      },
    );
  }
}

/**
 * Reads a subject or actor token (`role`) from its source, afresh: it is never cached, so a rotated
 * service account token or a new CI token is what each grant sends. A source that is absent ends with
 * one sentence naming what was looked for. Returns the token, checked (`checkSourcedToken`).
 */
async function readTokenSource(
  source: TokenSource,
  role: "subject" | "actor",
  config: Config,
  deps: Deps,
  trace?: Trace,
): Promise<string> {
  const flag = `--${role}-token-from`;
  let text: string;
  switch (source.kind) {
    case "github-actions":
      text = await githubActionsToken(config, deps, trace);
      break;
    case "gitlab":
      text = deps.env(source.variable) ?? "";
      if (!text) {
        throw missingSource(
          `${source.variable} is not set: this is not a GitLab CI job whose "id_tokens:" block defines it`,
          `add it to the job: id_tokens: { ${source.variable}: { aud: "${displayIssuer(config.issuer)}" } }`,
        );
      }
      break;
    case "env":
      text = deps.env(source.variable) ?? "";
      if (!text) {
        throw missingSource(`${source.variable} is not set (${flag} env:${source.variable})`, "set it to the token");
      }
      break;
    case "stdin": {
      if (deps.canPrompt) {
        // A terminal: reading to its end would wait for a Ctrl-D nobody knows to type.
        throw missingSource(`Stdin is a terminal, not a token (${flag} -)`, "pipe the token into this command");
      }
      const bytes = deps.readStdin ? await deps.readStdin() : new Uint8Array();
      text = new TextDecoder().decode(bytes.subarray(0, MAX_SOURCE_BYTES + 1));
      if (!text.trim()) {
        throw missingSource(
          `Nothing was read from stdin (${flag} -)`,
          "pipe the token into this command",
        );
      }
      break;
    }
    case "kubernetes":
      text = await readTokenFile(source.path, () =>
        missingSource(
          `There is no service account token at "${
            sanitize(source.path)
          }": this is not a Kubernetes pod with a projected service account token`,
          `mount one (a serviceAccountToken projection with the audience "${
            displayIssuer(config.issuer)
          }") and name its path with kubernetes:PATH`,
        ));
      break;
    case "file":
      text = await readTokenFile(
        source.path,
        () =>
          missingSource(
            `There is no file "${sanitize(source.path)}" (${flag} file:${sanitize(source.path)})`,
            "check the path",
          ),
      );
      break;
  }
  return checkSourcedToken(text, `${role} token from ${describeSource(source)}`, source, deps.now());
}

/**
 * Runs the configured grant once and returns the new entry (not saved): discovery (or, to run it again,
 * the metadata the entry keeps), client authentication as configured, DPoP when asked (the entry's key
 * again, if it has one), the sources read afresh, and the answer checked by oauth4webapi
 * (`processClientCredentialsResponse`, `processGenericTokenEndpointResponse`) and `checkIssuedTokenType`.
 */
async function runGrant(config: Config, deps: Deps, previous?: TokenSet): Promise<TokenSet> {
  const oauth = await lib();
  const trace = makeTrace(config, deps);
  if (config.clientKey) await readClientKey(config.clientKey); // a key that will not do fails before any request
  // The sources first: one that is absent (not in that CI, no such file) fails before any request.
  const read = (text: string | undefined, role: "subject" | "actor") =>
    text === undefined
      ? undefined
      : readTokenSource(parseTokenSource(text, `${role}-token-from`), role, config, deps, trace);
  const subject = await read(config.subjectTokenFrom, "subject");
  const actor = await read(config.actorTokenFrom, "actor");
  const issuer = previous
    ? await issuerFor(
      previous.metadata as unknown as Oauth.AuthorizationServer,
      {
        ...config,
        clientAuth: refreshClientAuth(previous, config),
      },
      deps,
      trace,
    )
    : await discover(config, deps, trace);
  if (config.dpop || previous?.dpopKey) {
    const key = previous?.dpopKey ?? await newDpopKey(dpopAlgorithm(issuer.as.dpop_signing_alg_values_supported));
    await enableDpop(issuer, await dpopState(key, previous?.dpopNonces, deps));
  }
  const parameters = grantParameters(config, subject, actor);
  const { as, client, auth, http } = issuer;
  const grant = config.grant!;
  const tokens = await step(grantDoing(grant), () =>
    onceMoreForNonce(issuer, async () => {
      const response = grant === "client_credentials"
        ? await oauth.clientCredentialsGrantRequest(as, client, auth, parameters, http)
        : await oauth.genericTokenEndpointRequest(as, client, auth, GRANT_TYPES[grant], parameters, http);
      return await processTokens(response, deps.now(), (r) =>
        grant === "client_credentials"
          ? oauth.processClientCredentialsResponse(as, client, r)
          // RFC 8693 §2.2.1: a token that is no access token has the token_type N_A.
          : oauth.processGenericTokenEndpointResponse(as, client, r, { recognizedTokenTypes: { n_a: () => {} } }));
    })).catch((error) => {
      throw grantHint(exchangeHint(error, issuer, config), config);
    });
  checkIssuedTokenType(tokens, config);
  return toTokenSet(config, tokens, {
    now: deps.now(),
    metadata: as as unknown as Record<string, unknown>,
    authMethod: issuer.authMethod,
    user: jwtSubject(subject),
    dpop: issuer.dpop,
  });
}

/** What a grant's request is, for "Cannot …" messages. */
function grantDoing(grant: Grant): string {
  return grant === "token-exchange"
    ? "exchange the subject token"
    : grant === "jwt-bearer"
    ? "get a token for the JWT assertion"
    : "get a token with the client's credentials";
}

/** A better hint for a grant the server refused: what the server lacks, or what to check of the subject token. */
function grantHint(error: unknown, config: Config): unknown {
  if (!(error instanceof ErrorResponse)) return error;
  const hints: Record<string, string> = {
    unsupported_grant_type: `the server does not offer the ${config.grant} grant, or not at its token endpoint`,
    unauthorized_client: `the client "${
      sanitize(config.clientId)
    }" may not use the ${config.grant} grant: allow it at the server`,
    invalid_grant: config.subjectTokenFrom
      ? `the server refused the subject token from ${config.subjectTokenFrom}: check that it trusts its issuer and that its audience is what the server expects`
      : "",
    invalid_target: "check --resource and --audience: the server does not issue tokens for them to this client",
  };
  const hint = hints[error.code];
  if (!hint || error.hint?.includes("--client-key")) return error;
  return new ErrorResponse(error.message, {
    code: error.code,
    description: error.description,
    status: error.status,
    hint,
    cause: error,
  });
}

/**
 * `login --grant`: runs the grant (always: a login starts afresh) and saves the entry under its lock,
 * as every writer of an entry does, its long-lived secrets (a refresh token, a DPoP key) sealed as a
 * person's are (`saveEntry`). Says for whom the token is, unless `--quiet`.
 */
async function grantAndSave(config: Config, deps: Deps, name: string): Promise<TokenSet> {
  await deps.storage.prepare?.(`${name}.json`);
  // Before the grant runs: with --token-storage keychain, tokens that could not be kept would be wasted.
  await keychainReady(config, deps);
  deps.catchInterrupt?.();
  const lock = await lockEntry(name, deps);
  let entry: TokenSet;
  try {
    entry = await runGrant(config, deps);
    // What the file held: its keychain item, if another, is removed; its secrets' place, if the file, said once.
    const text = await deps.storage.read(`${name}.json`).catch(() => undefined);
    await saveEntry(config, deps, name, entry, { previous: text === undefined ? undefined : parseTokenSet(text) });
  } finally {
    lock.release();
  }
  if (!config.quiet) say(deps, `Got a token from ${displayIssuer(config.issuer)} ${grantedTo(entry)}`);
  return entry;
}

/** Whom an entry of a grant speaks for, in words: "for the client X (client credentials)", "for SUB (token exchange)". */
function grantedTo(entry: Pick<TokenSet, "grant" | "user" | "clientId">): string {
  const how = entry.grant?.replace(/[_-]/g, " ");
  return entry.user ? `for ${sanitize(entry.user)} (${how})` : `for the client ${sanitize(entry.clientId)} (${how})`;
}

/**
 * Renews an entry of a grant under its lock: the entry again if another process renewed it meanwhile;
 * else a refresh where the grant gave a refresh token (a token exchange may), falling back to the grant
 * when the server refuses it; else the grant, run again. Sealed secrets are opened first (one keychain
 * read); when they cannot be had, the grant runs afresh, as it needs none of them. The new entry is
 * saved by `saveEntry`. A renewal that fails while the token has not expired leaves it in use, with a
 * warning (as a failed refresh does).
 */
async function renewGrant(
  config: Config,
  deps: Deps,
  name: string,
  rejected?: string,
): Promise<TokenSet> {
  const current = await readEntry(config, deps, name);
  if (current && isFresh(current, deps.now(), config.minTtlMs) && current.accessToken !== rejected) return current;
  try {
    const open = current && await openEntry(current, deps, "renew the access token").catch((error) => {
      if (!(error instanceof SecretsGone || error instanceof LoginError)) throw error;
      return undefined;
    });
    if (!open) await keychainReady(config, deps);
    const item = open && await refreshItem(config, deps, name, open);
    let next: TokenSet | undefined;
    if (open?.refreshToken) {
      next = await refreshTokenSet(open, config, deps, makeTrace(config, deps)).catch((error) => {
        if (!(error instanceof ErrorResponse && error.code === "invalid_grant")) throw error;
        return undefined; // the refresh token is spent: the grant itself runs again
      });
    }
    next ??= await runGrant(config, deps, open);
    await saveEntry(config, deps, name, next, { previous: current, item });
    if (deps.signal.aborted) throw new LoginError("interrupted", "Interrupted"); // saved: a later run uses it
    return next;
  } catch (error) {
    if (!current || hasExpired(current, deps.now()) || deps.signal.aborted || current.accessToken === rejected) {
      throw error;
    }
    const why = (error as Error).message.replace(/^Cannot [^:]*: /, "");
    return stillValid(current, why, deps, "it is tried again at the next use");
  }
}

// ── 17 The token cache: which entry is a configuration's, its key and its lifetimes ────────────────────────────────

/** The version of the cache entry format. */
const CACHE_VERSION: TokenSet["version"] = 1;

/** A cached token response, stamped once with an absolute expiry from the injected clock. */
export interface TokenSet {
  /** The entry format's version. */
  version: 1;
  /** The configured issuer: with the client and the scope, what the entry's key is made of. */
  issuer: string;
  /** The configured client id. */
  clientId: string;
  /** The scope as configured ("" for the default): part of the key, not what was granted. */
  requestedScope: string;
  /** The access token (RFC 6750 `b64token` syntax; a secret). */
  accessToken: string;
  /** "Bearer" or "DPoP". */
  tokenType: string;
  /** Milliseconds since the epoch; absent when nothing stated a lifetime (see `accessTokenExpiry`). */
  expiresAt?: number;
  /** The refresh token (a secret), when the server issued one. */
  refreshToken?: string;
  /** The ID token (OpenID Connect), when the server issued one. */
  idToken?: string;
  /** The scope the server granted (omitted: as asked). */
  scope?: string;
  /** The name shown for the person. */
  user?: string;
  /** The person's `sub`. */
  subject?: string;
  /** How the client authenticated; refresh and revocation authenticate the same way. */
  authMethod: Config["clientAuth"] & string;
  /** The issuer's metadata, so refresh and logout need no discovery round trip. */
  metadata: Record<string, unknown>;
  /** The profile the entry belongs to (part of its key), when one was in use. */
  profile?: string;
  /** Milliseconds since the epoch when the response arrived: with `expiresAt`, the token's lifetime. */
  issuedAt?: number;
  /** When the refresh token expires (`refresh_expires_in`, `refresh_token_expires_in`), if the server said. */
  refreshExpiresAt?: number;
  /** DPoP (RFC 9449): the entry's private key as a JWK (never printed), and the latest nonce per origin. */
  dpopKey?: JsonWebKey;
  /** The latest DPoP nonce per origin (RFC 9449 §8). */
  dpopNonces?: Record<string, string>;
  /** RFC 8707: the resources the login asked for, the one `accessToken` is for, and tokens for the others. */
  resources?: string[];
  /** The resource `accessToken` is for. */
  resource?: string;
  /** Access tokens for the login's other resources, by resource (refreshed with `resource`, RFC 8707 §2.2). */
  resourceTokens?: Record<string, { accessToken: string; tokenType: string; expiresAt?: number }>;
  /**
   * RFC 9728: set when the API's metadata chose the server (`Config.protectedResource`): the resource
   * identifier the entry is kept under (the same as `resource`), and the name of this tool's client
   * registration at the server (RFC 7591), when the client was one.
   */
  protectedResource?: { resource: string; registration?: string };
  /** RFC 9470: when the person signed in, in ms since the epoch (the ID token's `auth_time`, else the sign-in's time). */
  authTime?: number;
  /** RFC 9470: the sign-in's authentication context class: the ID token's `acr`, else the `acr_values` it asked for. */
  acr?: string;
  /**
   * The long-lived secrets (`refreshToken`, `dpopKey`), when they are not in this file: sealed with
   * AES-256-GCM under a 256-bit key that the keychain item `item` (service `oauth-login`) holds.
   */
  sealed?: {
    /** The keychain item's account, which names the issuer, client, user and this file. */
    item: string;
    /** The kinds of secret sealed, so that what the entry holds is known without the keychain. */
    holds: ("refresh_token" | "dpop_key" | "client_secret")[];
    /** AES-GCM's 96-bit IV, base64url. */
    iv: string;
    /** The ciphertext of the secrets' JSON and its tag, base64url; the item's account is the additional data. */
    data: string;
  };
  /**
   * Why the long-lived secrets are in this file in the clear: "chosen" (`--token-storage file`), or
   * what kept the keychain from answering under `auto`. Absent: an earlier version's entry, or none.
   */
  keptInFile?: string;
  /** The grant without a person that made the entry (part of its key); absent: a person signed in. */
  grant?: "client_credentials" | "jwt-bearer" | "token-exchange";
  /** Where the grant's subject token came from (`github-actions`, `kubernetes:/path`, ...): never the token. */
  subjectTokenFrom?: string;
  /** Where the grant's actor token came from (RFC 8693 §2.1). */
  actorTokenFrom?: string;
  /** A token exchange's `issued_token_type` (RFC 8693 §2.2.1), a URI. */
  issuedTokenType?: string;
}

/**
 * The entry's file name: the issuer's host, then a 64-bit FNV-1a hash of issuer, client id, scope,
 * resource and, when one is in use, the profile's name (so two accounts at one issuer and client
 * keep two entries), the endpoints given by hand (so that a login whose tokens go elsewhere can
 * never replace, or be read as, the one that discovered them), and a grant without a person with its
 * sources and token types (so that a machine's token never replaces, or is read as, a person's). Without
 * a profile, such endpoints or a grant the key is what it always was. It only names files (each entry also records its issuer, client and
 * profile, checked on read), so a fast synchronous hash serves; WebCrypto's SHA-256 would cost the
 * hot path a millisecond.
 */
const cacheKey: (
  config:
    & Pick<Config, "issuer" | "clientId" | "scope" | "params" | "profile">
    & Partial<Pick<Config, "sources" | EndpointKey | GrantKey>>,
) => string = (function cacheKey(
  config:
    & Pick<Config, "issuer" | "clientId" | "scope" | "params" | "profile">
    & Partial<Pick<Config, "sources" | EndpointKey | GrantKey>>,
): string {
  const scope = (config.scope ?? "").split(/\s+/).filter(Boolean).sort().join(" ");
  const resource = config.params.filter(([key]) => key === "resource" || key === "audience").map((p) => p.join("="));
  const parts: unknown[] = [config.issuer, config.clientId, scope, resource.sort()];
  if (config.profile !== undefined) parts.push({ profile: config.profile });
  // A preset's endpoints are not hand-given (they have no source): the preset's issuer already names them.
  const manual = MANUAL_ENDPOINTS.filter(([key]) => config.sources?.[key] !== undefined && config[key] !== undefined);
  if (manual.length > 0) parts.push({ endpoints: manual.map(([key]) => [key, config[key]]) });
  if (config.grant) parts.push({ grant: GRANT_KEYS.map((key) => config[key] ?? null) });
  return fileName(new URL(config.issuer), parts);
}).bind(undefined);

/** A file name of the cache: the URL's host, then a 64-bit FNV-1a hash of `parts` (as JSON) in 16 hex digits. Pure. */
const fileName = (function fileName(url: URL, parts: unknown[]): string {
  const material = JSON.stringify(parts);
  let low = 0x811c9dc5, high = 0xcbf29ce4; // two 32-bit FNV-1a lanes, the second seeded differently
  for (let i = 0; i < material.length; i++) {
    const c = material.charCodeAt(i);
    low = Math.imul(low ^ c, 0x01000193) >>> 0;
    high = Math.imul(high ^ c ^ (low >>> 24), 0x01000193) >>> 0;
  }
  const hex = (n: number) => n.toString(16).padStart(8, "0");
  const host = url.hostname.replace(/[^a-z0-9.-]/gi, "_");
  return `${host}-${hex(high)}${hex(low)}`;
}).bind(undefined);

/**
 * The file names an entry for this configuration may have been saved under by earlier versions,
 * which kept the slash `URL` puts after a bare origin (`https://idp.example/`). Tried only after the
 * current name misses, so the cached-token path does no extra I/O.
 */
function legacyCacheKeys(config: Pick<Config, "issuer" | "clientId" | "scope" | "params">): string[] {
  const url = parseUrl(config.issuer);
  if (!url || url.pathname !== "/" || config.issuer.endsWith("/")) return [];
  return [cacheKey({ ...config, issuer: `${config.issuer}/` })];
}

/** Whether two issuer identifiers name the same issuer: equal, or the same origin with and without its slash. */
const sameIssuer = (function sameIssuer(a: string, b: string): boolean {
  const bare = (issuer: string) =>
    issuer.endsWith("/") && parseUrl(issuer)?.pathname === "/" ? issuer.slice(0, -1) : issuer;
  return a === b || bare(a) === bare(b);
}).bind(undefined);

/** Parses a cache entry; undefined when it is not one we wrote (corrupt, truncated, another version). */
const parseTokenSet = (function parseTokenSet(text: string): TokenSet | undefined {
  let value: Record<string, unknown>;
  try {
    value = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (!value || typeof value !== "object" || Array.isArray(value) || value.version !== CACHE_VERSION) return undefined;
  const required = ["issuer", "clientId", "requestedScope", "accessToken", "tokenType", "authMethod"];
  const optional = [
    "refreshToken",
    "idToken",
    "scope",
    "user",
    "subject",
    "profile",
    "grant",
    "subjectTokenFrom",
    "actorTokenFrom",
    "issuedTokenType",
  ];
  if (required.some((key) => typeof value[key] !== "string") || value.accessToken === "") return undefined;
  if (optional.some((key) => value[key] !== undefined && typeof value[key] !== "string")) return undefined;
  if (value.expiresAt !== undefined && !Number.isFinite(value.expiresAt)) return undefined;
  if (value.issuedAt !== undefined && !Number.isFinite(value.issuedAt)) return undefined;
  if (value.refreshExpiresAt !== undefined && !Number.isFinite(value.refreshExpiresAt)) return undefined;
  const metadata = value.metadata as Record<string, unknown> | undefined;
  if (!metadata || typeof metadata !== "object") return undefined;
  if (typeof metadata.issuer !== "string" || typeof metadata.token_endpoint !== "string") return undefined;
  const dpopKey = value.dpopKey as Record<string, unknown> | undefined;
  if (dpopKey !== undefined && (!dpopKey || typeof dpopKey !== "object" || typeof dpopKey.d !== "string")) {
    return undefined;
  }
  const resource = value.protectedResource as Record<string, unknown> | undefined;
  if (
    resource !== undefined &&
    (!resource || typeof resource !== "object" || typeof resource.resource !== "string" ||
      !["string", "undefined"].includes(typeof resource.registration))
  ) return undefined;
  if (value.authTime !== undefined && !Number.isFinite(value.authTime)) return undefined;
  if (value.acr !== undefined && typeof value.acr !== "string") return undefined;
  if (value.sealed !== undefined && !isSealed(value.sealed)) return undefined;
  if (value.keptInFile !== undefined && typeof value.keptInFile !== "string") return undefined;
  return value as unknown as TokenSet;
}).bind(undefined);

/** Whether a value is an entry's `sealed` member: strings where strings belong, known kinds. Pure. */
function isSealed(value: unknown): boolean {
  const sealed = value as Record<string, unknown>;
  return !!sealed && typeof sealed === "object" && typeof sealed.item === "string" &&
    typeof sealed.iv === "string" && typeof sealed.data === "string" && Array.isArray(sealed.holds) &&
    sealed.holds.every((kind) => kind === "refresh_token" || kind === "dpop_key" || kind === "client_secret");
}

/** A token whose lifetime the server did not state is treated as living this long (seconds) for renewal. */
const UNKNOWN_LIFETIME_S = 15 * 60;

/** Stated lifetimes are clamped to this range (seconds): 1 s to 365 days. */
const MIN_LIFETIME_S = 1;

const MAX_LIFETIME_S = 365 * 86_400;

/**
 * Whether `token` can print the cached access token without renewing it. The margin is
 * `min(minTtlMs, half the token's lifetime)`, so a token is never due just after it was issued. A
 * token of unknown lifetime is due `UNKNOWN_LIFETIME_S` after it was issued (less the margin), and
 * only when it can be renewed (a refresh token, or a grant without a person to run again): else there
 * is nothing to renew it with. Times in ms. On the hot path: arithmetic only.
 */
const isFresh = (function isFresh(entry: TokenSet, now: number, minTtlMs: number): boolean {
  const { expiresAt, issuedAt } = entry;
  if (expiresAt === undefined) {
    if (issuedAt === undefined || !renewable(entry)) return true;
    const assumed = UNKNOWN_LIFETIME_S * 1000;
    return now - issuedAt < assumed - Math.min(minTtlMs, assumed / 2);
  }
  const lifetime = issuedAt === undefined ? Infinity : expiresAt - issuedAt;
  return expiresAt - now > Math.min(minTtlMs, Math.max(lifetime, 0) / 2);
}).bind(undefined);

/**
 * Whether an entry can be renewed without a person: it holds a refresh token (in its file or sealed),
 * or a grant that can run again. Asks no keychain. Pure, on the cached path.
 */
function renewable(entry: TokenSet): boolean {
  return holds(entry, "refresh_token") || !!entry.grant;
}

/** Whether the access token has expired by its known expiry (one of unknown lifetime never has). */
function hasExpired(entry: TokenSet, now: number): boolean {
  return entry.expiresAt !== undefined && entry.expiresAt <= now;
}

/**
 * A lifetime in seconds as a server may send it: a finite positive number, or a string of digits.
 * Anything else (0, negative, non-numeric, a boolean, NaN) is undefined: "not stated".
 */
function statedSeconds(value: unknown): number | undefined {
  const n = typeof value === "number"
    ? value
    : typeof value === "string" && /^\s*\d+(\.\d+)?\s*$/.test(value)
    ? Number(value)
    : NaN;
  return Number.isFinite(n) && n > 0 ? n : undefined;
}

/** Clamps a lifetime in seconds to `MIN_LIFETIME_S`..`MAX_LIFETIME_S`. */
function clampLifetime(seconds: number): number {
  return Math.min(Math.max(seconds, MIN_LIFETIME_S), MAX_LIFETIME_S);
}

/**
 * Seconds from `now` (ms) until an absolute time in epoch seconds (or milliseconds, as some servers
 * send: anything past the year 5000 is taken as such); undefined unless it is in the future.
 */
function secondsUntil(at: unknown, now: number): number | undefined {
  const stated = statedSeconds(at);
  if (stated === undefined) return undefined;
  return statedSeconds((stated > 1e11 ? stated / 1000 : stated) - now / 1000);
}

/**
 * The `exp` claim (epoch seconds) of an access token that is a JWT, decoded without verifying it: a
 * hint about its lifetime, never trusted for anything else. Undefined for an opaque token.
 */
function jwtExpiry(token: unknown): number | undefined {
  const exp = jwtClaims(token)?.exp;
  return typeof exp === "number" ? exp : undefined;
}

/** The claims of a JWT, decoded without verifying it (the caller knows what it may trust them for); else undefined. */
function jwtClaims(token: unknown): Record<string, unknown> | undefined {
  if (typeof token !== "string") return undefined;
  const parts = token.split(".");
  if (parts.length !== 3) return undefined;
  try {
    return parseJsonObject(atob(parts[1].replace(/-/g, "+").replace(/_/g, "/")));
  } catch {
    return undefined;
  }
}

/**
 * When the access token of a token response expires, in ms since the epoch, or undefined when
 * nothing says. In order: `expires_in` (RFC 6749 §5.1), `expires_at` (epoch seconds, Strava), the
 * access token's own `exp` when it is a JWT, and for a refresh the previous token's lifetime. A
 * lifetime is clamped to `MIN_LIFETIME_S`..`MAX_LIFETIME_S`; values that are not finite positive
 * numbers count as not stated, so no answer can make an invalid date.
 */
function accessTokenExpiry(
  tokens: Record<string, unknown>,
  now: number,
  previous?: TokenSet,
): number | undefined {
  const previousLifetime = previous?.expiresAt !== undefined && previous.issuedAt !== undefined
    ? statedSeconds((previous.expiresAt - previous.issuedAt) / 1000)
    : undefined;
  const seconds = statedSeconds(tokens.expires_in) ?? secondsUntil(tokens.expires_at, now) ??
    secondsUntil(jwtExpiry(tokens.access_token), now) ?? previousLifetime;
  return seconds === undefined ? undefined : now + clampLifetime(seconds) * 1000;
}

/** Builds the cache entry from a token response; a refresh keeps what the response leaves out. */
function toTokenSet(
  config:
    & Pick<Config, "issuer" | "clientId" | "scope" | "profile">
    & Partial<
      Pick<Config, "resources" | "params" | "protectedResource" | "grant" | "subjectTokenFrom" | "actorTokenFrom">
    >,
  tokens: Oauth.TokenEndpointResponse,
  context: {
    now: number;
    metadata: Record<string, unknown>;
    authMethod: ClientAuthMethod;
    user?: string;
    subject?: string;
    /** The DPoP key the tokens are bound to, and the nonces seen. */
    dpop?: DpopState;
  },
  previous?: TokenSet,
): TokenSet {
  // Keycloak's `refresh_expires_in` and GitHub's `refresh_token_expires_in`; Keycloak's 0 means "none".
  const refreshSeconds = statedSeconds(tokens.refresh_expires_in ?? tokens.refresh_token_expires_in);
  return {
    version: CACHE_VERSION,
    issuer: config.issuer,
    clientId: config.clientId,
    requestedScope: config.scope ?? "",
    accessToken: tokens.access_token,
    // oauth4webapi lower-cases it; a token exchange's N_A (RFC 8693 §2.2.1) is no access token.
    tokenType: tokens.token_type === "dpop" ? "DPoP" : tokens.token_type === "n_a" ? "N_A" : tokens.token_type,
    expiresAt: accessTokenExpiry(tokens, context.now, previous),
    refreshToken: tokens.refresh_token ?? previous?.refreshToken,
    idToken: tokens.id_token ?? previous?.idToken,
    scope: tokens.scope ?? previous?.scope,
    user: context.user ?? previous?.user,
    subject: context.subject ?? previous?.subject,
    authMethod: context.authMethod,
    metadata: context.metadata,
    ...(config.profile !== undefined ? { profile: config.profile } : {}),
    issuedAt: context.now,
    refreshExpiresAt: refreshSeconds === undefined
      ? tokens.refresh_token === undefined ? previous?.refreshExpiresAt : undefined
      : context.now + clampLifetime(refreshSeconds) * 1000,
    ...(config.resources?.length
      ? { resources: config.resources, resource: previous?.resource ?? config.resources[0] }
      : {}),
    ...(context.dpop || previous?.dpopKey
      ? {
        dpopKey: context.dpop?.jwk ?? previous?.dpopKey,
        dpopNonces: { ...previous?.dpopNonces, ...context.dpop?.nonces },
      }
      : {}),
    // A grant without a person names itself and its sources; a person's sign-in, when and how (RFC 9470).
    ...(config.grant
      ? {
        grant: config.grant,
        subjectTokenFrom: config.subjectTokenFrom,
        actorTokenFrom: config.actorTokenFrom,
        issuedTokenType: typeof tokens.issued_token_type === "string"
          ? tokens.issued_token_type
          : previous?.issuedTokenType,
      }
      : previous
      ? previousSignIn(previous)
      : signedIn(config, tokens, context.now)),
  };
}

/** The entry's expiry as an RFC 3339 time, or null when the server stated none. */
function isoExpiry(entry: TokenSet): string | null {
  return entry.expiresAt === undefined ? null : new Date(entry.expiresAt).toISOString();
}

/** A cache entry's state: for the table of `profiles` and `whoami --all`, and their JSON. */
function entryState(entry: TokenSet | undefined, now: number): { state: string; text: string } {
  if (!entry) return { state: "logged_out", text: "not logged in" };
  if (entry.expiresAt === undefined) return { state: "valid", text: "valid, no stated expiry" };
  if (isFresh(entry, now, 0)) return { state: "valid", text: `valid, expires ${relativeTime(entry.expiresAt, now)}` };
  return renewable(entry)
    ? {
      state: "refreshable",
      text: `expired, ${holds(entry, "refresh_token") ? "refreshed" : "renewed"} when next used`,
    }
    : { state: "expired", text: "expired, sign in again" };
}

/** Whether an entry is one this configuration may use: the same issuer (with or without its slash), client, profile and grant. Pure. */
const belongsTo = (function belongsTo(
  entry: TokenSet,
  config: Pick<Config, "issuer" | "clientId" | "profile"> & Partial<Pick<Config, "grant">>,
): boolean {
  return sameIssuer(entry.issuer, config.issuer) && entry.clientId === config.clientId &&
    (entry.profile ?? "") === (config.profile ?? "") && (entry.grant ?? "") === (config.grant ?? "");
}).bind(undefined);

/** Reads the cached entry; a corrupt or foreign one is a warning and counts as logged out. */
const readEntry = (async function readEntry(config: Config, deps: Deps, name: string): Promise<TokenSet | undefined> {
  const text = await deps.storage.read(`${name}.json`);
  if (text === undefined) return undefined;
  const entry = parseTokenSet(text);
  if (!entry || !belongsTo(entry, config)) {
    say(
      deps,
      `warning: The cached token at "${deps.storage.dir}/${name}.json" is unreadable or not for this client; it is ignored and will be replaced at the next login`,
    );
    return undefined;
  }
  return entry;
}).bind(undefined);

/** An entry found for a configuration: where it lives (its file is `<name>.json`) and what it holds. */
interface FoundEntry {
  name: string;
  entry?: TokenSet;
  /** For an API's entry (`Config.protectedResource`): the configuration to renew it with, its server and client. */
  config?: Config;
}

/**
 * The one answer to "which entry is this configuration's", for every command: the entry under its key
 * (`cacheKey`); else under a key an earlier version used (`legacyCacheKeys`); else, for `--resource R`,
 * the entry of a login that asked for R among several resources (`otherEntries`). Without one, `name`
 * is the key, where a login saves. The cached-token path reads one file; the others only on a miss.
 * For an API whose metadata chose the server (`Config.protectedResource`): the entry under its resource
 * (`resourceEntry`), with the configuration to renew it with; `name` is "" when there is none.
 */
const entryFor = (async function entryFor(config: Config, deps: Deps): Promise<FoundEntry> {
  if (config.protectedResource) return await resourceEntry(config, deps);
  const name = cacheKey(config);
  const entry = await readEntry(config, deps, name);
  if (entry) return { name, entry };
  return (await otherEntries(config, deps, true))[0] ?? { name };
}).bind(undefined);

/**
 * This configuration's entries other than the one under its key, in `entryFor`'s order (`first`: only
 * the first): under the older keys, then the logins (same issuer, client, scope and profile) that asked
 * for its one resource among several. Files the tool does not trust are not this configuration's.
 */
async function otherEntries(
  config: Config,
  deps: Deps,
  first: boolean,
): Promise<Required<Omit<FoundEntry, "config">>[]> {
  const found: Required<Omit<FoundEntry, "config">>[] = [];
  for (const name of legacyCacheKeys(config)) {
    const entry = await readEntry(config, deps, name);
    if (entry) found.push({ name, entry });
    if (first && found.length > 0) return found;
  }
  const wanted = config.resources ?? [];
  if (wanted.length !== 1) return found;
  for (const name of await deps.storage.list()) {
    const text = await deps.storage.read(`${name}.json`).catch(() => undefined);
    const entry = text === undefined ? undefined : parseTokenSet(text);
    if (
      !entry || !belongsTo(entry, config) || entry.requestedScope !== (config.scope ?? "") ||
      (entry.resources?.length ?? 0) < 2 || !entry.resources!.includes(wanted[0]) ||
      found.some((other) => other.name === name)
    ) continue;
    // Only under the key that login had (its profile and hand-given endpoints too): else it is another login's.
    const login = {
      ...config,
      params: [
        ...config.params.filter(([key]) => key !== "resource"),
        ...entry.resources!.map((r): [string, string] => ["resource", r]),
      ],
    };
    if ([cacheKey(login), ...legacyCacheKeys(login)].includes(name)) found.push({ name, entry });
    if (first && found.length > 0) return found;
  }
  return found;
}

// ── 18 Owner-only files and the lock: the cache on disk, the one writer, who owns what ─────────────────────────────

/**
 * The token cache: one file per entry (`<name>.json`, `name` as `cacheKey` makes it) in a folder only
 * the user can change. Files that are not the user's own regular files are refused (a "config"
 * `LoginError`): never read, followed, written through or removed.
 */
export interface Storage {
  /** The cache folder. */
  readonly dir: string;
  /**
   * The file's text, or undefined when there is none. Refuses a link, a file of another user, a folder
   * others can change, and a file other users can read, unless `allowShared` is set; even then it
   * refuses one that others could have changed.
   */
  read(name: string, options?: { allowShared?: boolean }): Promise<string | undefined>;
  /** Replaces the file atomically (temporary file, then rename), owner-only. */
  write(name: string, text: string): Promise<void>;
  /**
   * Removes an entry's file or its lock file (`<name>.json`, `<name>.lock`), or a client registration's
   * (`<name>.client.json`, `<name>.client.lock`); nothing else.
   */
  remove(name: string): Promise<void>;
  /** The names of the entries: the `<name>.json` files whose name is one `cacheKey` makes, and no others. */
  list(): Promise<string[]>;
  /** Takes the entry's exclusive cross-process lock (a `.lock` file beside it); waits for it. */
  lock(name: string): Promise<{ release(): void }>;
  /**
   * Checks, before a sign-in, that the file `name` can be saved here (creates the folder, writes and
   * removes a probe file; what is at `name` must be the user's own file); throws what a `write` would.
   * Absent: nothing is checked.
   */
  prepare?(name?: string): Promise<void>;
}

/** `$OAUTH_LOGIN_CACHE`, else `$XDG_CACHE_HOME/oauth-login`, else the platform's user cache directory. */
const cacheDir = (function cacheDir(env: (name: string) => string | undefined, os: string): string | undefined {
  const explicit = env(ENV_VARS.cache);
  if (explicit) return explicit;
  const xdg = env("XDG_CACHE_HOME");
  if (xdg) return `${xdg}/oauth-login`;
  if (os === "windows") {
    const local = env("LOCALAPPDATA");
    return local ? `${local}\\oauth-login` : undefined;
  }
  const home = env("HOME");
  if (!home) return undefined;
  return os === "darwin" ? `${home}/Library/Caches/oauth-login` : `${home}/.cache/oauth-login`;
}).bind(undefined);

/** A temporary cache file older than this was left by a writer that died; the next write removes it. */
const STALE_TEMPORARY_MS = 10 * 60_000;

/** An entry's name as `cacheKey` makes it (its file is `<name>.json`, its lock `<name>.lock`). */
const ENTRY_NAME = /^[A-Za-z0-9._-]*-[0-9a-f]{16}$/;

/**
 * The files of the cache that the tool may remove: an entry and its lock file, and a client
 * registration (`<name>.client.json`, see `registrationName`) and its lock file.
 */
const CACHE_FILE = /^[A-Za-z0-9._-]*-[0-9a-f]{16}(?:\.client)?\.(?:json|lock)$/;

/**
 * The temporary files the cache's writers leave when killed: `writePrivateFile`'s beside an entry or a
 * registration (`<name>.json.<32 hex>.tmp`) and the probe's (`.probe.<32 hex>.tmp`). No other file is a leftover.
 */
const CACHE_TEMPORARY = /^(?:[A-Za-z0-9._-]*-[0-9a-f]{16}(?:\.client)?\.json|\.probe)\.[0-9a-f]{32}\.tmp$/;

/** 32 random hex digits, for the name of a temporary file. */
function randomHex(): string {
  return crypto.randomUUID().replaceAll("-", "");
}

/**
 * The one writer of private files (the token cache's entries, the profiles' config file): a temporary
 * file created exclusively beside `path` (`<path>.<32 hex>.tmp`: never an existing file, never through
 * a link), owner-only (0600), written, synced, then renamed over `path` (a rename replaces a link, it
 * does not write through it). A missing folder is created 0700. `beforeRename` may refuse by throwing;
 * the temporary file is removed whenever the rename does not happen.
 */
async function writePrivateFile(path: string, text: string, beforeRename?: () => Promise<void>): Promise<void> {
  const cut = Math.max(path.lastIndexOf("/"), path.lastIndexOf("\\"));
  if (cut > 0) await Deno.mkdir(path.slice(0, cut), { recursive: true, mode: 0o700 });
  const temporary = `${path}.${randomHex()}.tmp`;
  const file = await Deno.open(temporary, { write: true, createNew: true, mode: 0o600 });
  try {
    try {
      const bytes = new TextEncoder().encode(text);
      for (let written = 0; written < bytes.length;) written += await file.write(bytes.subarray(written));
      await file.syncData();
    } finally {
      file.close();
    }
    await beforeRename?.();
    await Deno.rename(temporary, path);
  } catch (error) {
    await Deno.remove(temporary).catch(() => {});
    throw error;
  }
}

/** The user's id once known (see `userId`); whether Deno was asked for it. */
let knownUserId: number | undefined;
let askedUserId = false;

/**
 * The user's id, without asking for a permission: `Deno.uid()` when the sys permission is already
 * granted (asking would prompt), else the owner of a file this process created (`probeUserId`), once
 * it has created one; undefined until then, and on Windows. No I/O.
 */
const userId = (function userId(): number | undefined {
  if (!askedUserId && knownUserId === undefined && Deno.build.os !== "windows") {
    askedUserId = true;
    if (Deno.permissions.querySync({ name: "sys", kind: "uid" }).state === "granted") {
      knownUserId = Deno.uid() ?? undefined;
    }
  }
  return knownUserId;
}).bind(undefined);

/** Whether Deno lets this process write in `dir` without asking (`whoami` runs with read permission only). */
function mayWrite(dir: string): boolean {
  return Deno.permissions.querySync({ name: "write", path: dir }).state === "granted";
}

/** Learns the user's id from a file created exclusively in `dir` (`.probe.<32 hex>.tmp`), then removed. */
async function probeUserId(dir: string): Promise<number | undefined> {
  const probe = `${dir}/.probe.${randomHex()}.tmp`;
  const file = await Deno.open(probe, { write: true, createNew: true, mode: 0o600 });
  try {
    const owner = (await file.stat()).uid;
    // The owner a file of ours gets (on Linux, where `Deno.uid()` needs a permission the tasks do not grant).
    if (owner !== null) knownUserId = owner;
    return owner ?? undefined;
  } finally {
    file.close();
    await Deno.remove(probe);
  }
}

/** What `Deno.lstat` (or, for the folder, `Deno.stat`) says of a file, as far as trusting it goes. */
type FileFacts = Pick<Deno.FileInfo, "isFile" | "isDirectory" | "isSymlink" | "mode" | "uid">;

/**
 * A file or folder of the token cache that the tool does not use: it is not read, followed, written
 * through or deleted. `removable`: still the user's own regular file, only others may read or change
 * it; `logout` removes such a file (without sending a secret to what it names).
 */
class Untrusted extends LoginError {
  readonly removable: boolean;
  constructor(message: string, hint: string, removable = false) {
    super("config", message, { hint });
    this.removable = removable;
  }
}

/**
 * Why the cache folder cannot hold the user's tokens, or undefined: it must be a folder (a link to one
 * counts as that folder) of the user (`uid`; when unknown, the folder's owner stands for the user) that
 * no one else may change. Pure.
 */
const folderProblem = (function folderProblem(
  dir: string,
  folder: FileFacts,
  uid: number | undefined,
): Untrusted | undefined {
  const elsewhere = `point ${ENV_VARS.cache} at a folder of your own`;
  if (!folder.isDirectory) return new Untrusted(`The token cache folder "${dir}" is not a folder`, elsewhere);
  if (uid !== undefined && folder.uid !== null && folder.uid !== uid) {
    return new Untrusted(`The token cache folder "${dir}" belongs to another user`, `${elsewhere} (or set HOME)`);
  }
  if (folder.mode !== null && (folder.mode & 0o022) !== 0) {
    return new Untrusted(
      `The token cache folder "${dir}" can be changed by other users`,
      `make it private with: chmod 700 ${shellWord(dir)}; or ${elsewhere}`,
    );
  }
  return undefined;
}).bind(undefined);

/**
 * Why a file of the cache is not the user's own, or undefined: it must be a regular file (a link is
 * never followed) of `owner` (the user), that others can neither read nor change. `shared`: a file
 * others may only read is accepted (logout revokes its tokens). Pure.
 */
const fileProblem = (function fileProblem(
  path: string,
  file: FileFacts,
  owner: number | null,
  shared = false,
): Untrusted | undefined {
  const remove = `remove it with: rm ${shellWord(path)}`;
  if (file.isSymlink) {
    return new Untrusted(`The token cache file "${path}" is a symbolic link, which the tool does not follow`, remove);
  }
  if (!file.isFile) return new Untrusted(`The token cache file "${path}" is not a regular file`, remove);
  if (owner !== null && file.uid !== null && file.uid !== owner) {
    return new Untrusted(`The token cache file "${path}" belongs to another user`, `if it is not needed, ${remove}`);
  }
  if (file.mode === null || (file.mode & 0o077) === 0) return undefined;
  const hint = `make it private with: chmod 600 ${shellWord(path)}`;
  if (!shared) return new Untrusted(`The token cache file "${path}" can be read by other users`, hint, true);
  if ((file.mode & 0o022) !== 0) {
    return new Untrusted(`The token cache file "${path}" can be changed by other users`, hint, true);
  }
  return undefined;
}).bind(undefined);

/** Why a cache operation failed, as a `LoginError` that names the folder and what to do. */
function cacheFailure(dir: string, error: unknown, doing: string): Error {
  if (error instanceof LoginError) return error;
  const reason = error instanceof Deno.errors.PermissionDenied
    ? "permission denied"
    : sanitize((error as Error).message ?? error, 120);
  return new LoginError("failure", `Cannot ${doing} in "${dir}": ${reason}`, {
    hint: `check that you own that directory, or point ${ENV_VARS.cache} at another one`,
    cause: error,
  });
}

/** The cache folder, created 0700 when missing and checked to be the user's (`folderProblem`); returns the user's id. */
async function ensureDir(dir: string): Promise<number | null> {
  await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
  const uid = userId() ?? (Deno.build.os === "windows" ? undefined : await probeUserId(dir));
  const problem = folderProblem(dir, await Deno.stat(dir), uid);
  if (problem) throw problem;
  return uid ?? null;
}

/** Refuses a file at `path` that is not the user's own regular file (its mode aside); nothing there is fine. */
async function ownOrAbsent(path: string, uid: number | null): Promise<void> {
  const info = await Deno.lstat(path).catch((error) => {
    if (error instanceof Deno.errors.NotFound) return undefined;
    throw error;
  });
  const problem = info && fileProblem(path, info, uid, true);
  if (problem && !problem.removable) throw problem;
}

/**
 * Reads a file of the cache (see `Storage.read`). Synchronous: one small file, read on every `token`,
 * where the async machinery costs more. Besides the read, one lstat of the file (not a stat: a link is
 * refused, never followed) and one stat of the folder, whose owner stands for the user when Deno does
 * not say who that is (`userId`).
 */
const readCacheFile = (async function readCacheFile(
  dir: string,
  name: string,
  allowShared?: boolean,
): Promise<string | undefined> {
  const path = `${dir}/${name}`;
  try {
    const info = Deno.lstatSync(path);
    const folder = Deno.statSync(dir);
    let uid = userId();
    const problem = () => folderProblem(dir, folder, uid) ?? fileProblem(path, info, uid ?? folder.uid, allowShared);
    let refused = problem();
    if (refused && uid === undefined && info.uid !== folder.uid && mayWrite(dir)) {
      // The file's owner and the folder's differ: learn which is the user's, to say which is foreign.
      uid = await probeUserId(dir).catch(() => undefined);
      refused = problem();
    }
    if (refused) throw refused;
    return Deno.readTextFileSync(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    throw cacheFailure(dir, error, "read the token cache");
  }
}).bind(undefined);

/** Temporary files a killed writer left behind (`CACHE_TEMPORARY`, the user's, older than any write in progress) are removed. */
async function removeStaleTemporaries(dir: string, uid: number | null): Promise<void> {
  try {
    for await (const entry of Deno.readDir(dir)) {
      if (!entry.isFile || !CACHE_TEMPORARY.test(entry.name)) continue;
      const info = await Deno.lstat(`${dir}/${entry.name}`);
      if (!info.isFile || (uid !== null && info.uid !== uid)) continue;
      if (info.mtime && Date.now() - info.mtime.getTime() > STALE_TEMPORARY_MS) {
        await Deno.remove(`${dir}/${entry.name}`);
      }
    }
  } catch { /* best effort: a leftover temporary file harms nothing */ }
}

/** Opens a lock file: created exclusively, or the user's own regular file already there (never a link). */
async function openLockFile(path: string, uid: number | null): Promise<Deno.FsFile | undefined> {
  try {
    return await Deno.open(path, { read: true, write: true, createNew: true, mode: 0o600 });
  } catch (error) {
    if (!(error instanceof Deno.errors.AlreadyExists)) throw error;
  }
  const gone = (error: unknown) => {
    if (error instanceof Deno.errors.NotFound) return undefined;
    throw error;
  };
  const info = await Deno.lstat(path).catch(gone);
  if (!info) return undefined; // removed meanwhile: create it again
  // A lock file holds nothing: only a mode others may read or change is no reason to refuse it.
  const problem = fileProblem(path, info, uid, true);
  if (problem && !problem.removable) throw problem;
  const file = await Deno.open(path, { read: true, write: true }).catch(gone);
  const opened = await file?.stat();
  if (opened && opened.ino === info.ino && opened.dev === info.dev) return file;
  file?.close(); // replaced between the two looks: look again
  return undefined;
}

/**
 * Takes the exclusive lock of the lock file at `path`. A logout removes the lock file while it holds
 * the lock (see `releaseLock`): whoever waited on the old file then locks the new one.
 */
async function lockFile(path: string, uid: number | null): Promise<{ release(): void }> {
  // Each turn that finds the file replaced follows another process's lock: the waiting is bounded by `lockEntry`.
  while (true) {
    const file = await openLockFile(path, uid);
    if (!file) continue;
    try {
      await file.lock(true);
      const held = await file.stat();
      const now = await Deno.lstat(path).catch((error) => {
        if (error instanceof Deno.errors.NotFound) return undefined;
        throw error;
      });
      if (now?.ino === held.ino && now?.dev === held.dev) return { release: () => releaseLock(file, path) };
    } catch (error) {
      file.close();
      throw error;
    }
    file.close();
  }
}

/**
 * Ends a lock: removes its file while still holding it, if it is still the file locked (a logout may
 * have removed it, and another process made a new one), then closes it, which releases the lock. A
 * lock file thus exists only while some process holds or waits for the lock.
 */
function releaseLock(file: Deno.FsFile, path: string): void {
  try {
    const [held, now] = [file.statSync(), Deno.lstatSync(path)];
    if (now.ino === held.ino && now.dev === held.dev) Deno.removeSync(path);
  } catch { /* already removed, or it cannot be: the lock ends all the same */ }
  file.close();
}

/**
 * The token cache on disk: a 0700 folder of 0600 files, replaced atomically. Only the user's own
 * regular files in a folder of theirs that others cannot change are read, locked, written or removed
 * (`folderProblem`, `fileProblem`); only the entries, their lock files and the writer's temporary
 * files are ever removed.
 */
export function fileStorage(
  dir: string,
  hooks: { beforeRename?: () => Promise<void> } = {},
): Storage {
  const path = (name: string) => `${dir}/${name}`;
  return {
    dir,
    read: (name, options) => readCacheFile(dir, name, options?.allowShared),
    async prepare(name) {
      try {
        const uid = await ensureDir(dir);
        if (name !== undefined) await ownOrAbsent(path(name), uid);
        await probeUserId(dir); // a file can be created here
      } catch (error) {
        throw cacheFailure(dir, error, "save the tokens");
      }
    },
    async write(name, text) {
      try {
        const uid = await ensureDir(dir);
        await writePrivateFile(path(name), text, async () => {
          // What the entry replaces is the user's own file, never a link (which the rename would replace).
          await ownOrAbsent(path(name), uid);
          await hooks.beforeRename?.();
        });
        await removeStaleTemporaries(dir, uid);
      } catch (error) {
        throw cacheFailure(dir, error, "save the tokens");
      }
    },
    async remove(name) {
      if (!CACHE_FILE.test(name)) throw new Error(`"${name}" is not a file of the token cache`);
      try {
        const info = await Deno.lstat(path(name));
        const problem = fileProblem(path(name), info, await ensureDir(dir), true);
        if (problem && !problem.removable) throw problem;
        await Deno.remove(path(name));
      } catch (error) {
        if (!(error instanceof Deno.errors.NotFound)) throw cacheFailure(dir, error, "remove the cached tokens");
      }
    },
    async list() {
      const names: string[] = [];
      try {
        const problem = folderProblem(dir, await Deno.stat(dir), userId());
        if (problem) throw problem;
        for await (const entry of Deno.readDir(dir)) {
          const name = entry.name.slice(0, -".json".length);
          if (!entry.isDirectory && entry.name.endsWith(".json") && ENTRY_NAME.test(name)) names.push(name);
        }
      } catch (error) {
        if (!(error instanceof Deno.errors.NotFound)) throw cacheFailure(dir, error, "list the token cache");
      }
      return names.sort();
    },
    async lock(name) {
      try {
        return await lockFile(path(`${name}.lock`), await ensureDir(dir));
      } catch (error) {
        throw cacheFailure(dir, error, "lock the token cache");
      }
    },
  };
}

/** The storage for a directory we could not work out: every use says how to set one. */
function missingStorage(): Storage {
  const fail = () => {
    throw new LoginError("config", "Cannot find a directory for the token cache", {
      hint: `set ${ENV_VARS.cache} (or HOME) to a directory you own`,
    });
  };
  return { dir: "", read: fail, write: fail, remove: fail, list: fail, lock: fail, prepare: fail };
}

/** How long `token` waits for another process's refresh before giving up. */
const LOCK_WAIT_MS = 60_000;

/** After this long waiting for another process's refresh, `token` says that it waits. */
const LOCK_NOTICE_MS = 3_000;

/**
 * Takes the entry's lock (or a client registration's: `doing` says what the other process does); Ctrl-C
 * or a minute of waiting for another process gives up.
 */
async function lockEntry(
  name: string,
  deps: Deps,
  doing = "is refreshing this token",
): Promise<{ release(): void }> {
  const pending = deps.storage.lock(name);
  // Usually the lock is free, or another process's refresh ends within a second; past that, say so.
  const quiet = new AbortController();
  (deps.timer ?? realTimer)(LOCK_NOTICE_MS, quiet.signal).then(() => {
    if (!quiet.signal.aborted) {
      say(deps, `Waiting for another oauth-login process, which ${doing} (Ctrl-C cancels)`);
    }
  });
  pending.finally(() => quiet.abort()).catch(() => {});
  try {
    return (await wait(deps, {
      ms: LOCK_WAIT_MS,
      until: pending,
      interrupted: "Interrupted",
      onTimeout: () =>
        new LoginError("failure", "Another oauth-login process has been refreshing this token for a minute", {
          hint: `try again; if it persists, look for a stuck oauth-login process using ${deps.storage.dir}`,
        }),
    }))!;
  } catch (error) {
    pending.then((lock) => lock.release(), () => {}); // should the lock still come, let it go
    throw error;
  }
}

// ── 19 The keychain: the platforms' own tools, each call bounded and never prompting ───────────────────────────────

/*
 * The platform's keychain is reached through its own tool, run as a process with any secret on its
 * stdin: `secret-tool` (the Secret Service: GNOME Keyring, KWallet, KeePassXC), `/usr/bin/security -i`
 * (macOS) and PowerShell calling Credential Manager (Windows). Every call is bounded by
 * `KEYCHAIN_DEADLINE_MS` (its process killed), nothing is called that could ask for a password (a
 * locked Secret Service is found by reading its `Locked` property), and the first problem met is
 * remembered for the rest of the process. What is kept there, and why only a key, is section 20.
 */

/** The keychain items' service: only items of this service, which the tool creates, are read, changed or removed. */
const KEYCHAIN_SERVICE = "oauth-login";

/** How long one call of a keychain tool may take before its process (group) is killed, in ms. */
const KEYCHAIN_DEADLINE_MS = 2_000;

/** The same on Windows, where PowerShell starts and compiles its Credential Manager calls first (not measured here). */
const KEYCHAIN_DEADLINE_WINDOWS_MS = 5_000;

/** What a keychain tool answered (`Deps.runTool`). */
type ToolAnswer = Awaited<ReturnType<NonNullable<Deps["runTool"]>>>;

/** Why the keychain cannot be used here: a reason and a remedy, as message clauses. */
class KeychainProblem extends Error {
  /** What keeps the keychain from answering, e.g. "the keyring is locked". */
  readonly reason: string;
  /** What the person can do about it. */
  readonly remedy: string;
  constructor(reason: string, remedy: string) {
    super(reason);
    this.reason = reason;
    this.remedy = remedy;
  }
}

/** Runs a keychain tool (within the deadline) and returns its answer. */
type ToolCall = (command: string, args: string[], stdin?: string) => Promise<ToolAnswer>;

/** One platform's keychain: command lines for its tool, and how to read their answers. */
interface KeychainBackend {
  /** What people call it. */
  name: string;
  /** Why it cannot be used, found without asking the person anything; undefined when it can (or cannot be told). */
  probe(call: ToolCall, env: (name: string) => string | undefined): Promise<KeychainProblem | undefined>;
  /** Creates or replaces the item. */
  store(call: ToolCall, account: string, label: string, secret: string): Promise<void>;
  /** The item's secret, or undefined when there is no such item. */
  lookup(call: ToolCall, account: string): Promise<string | undefined>;
  /** Removes the item; none is fine. */
  remove(call: ToolCall, account: string): Promise<void>;
  /** The accounts of every item of `KEYCHAIN_SERVICE`. */
  list(call: ToolCall): Promise<string[]>;
}

/** The first line of what a tool said, for a message (never from a call that was given a secret). */
function toolSaid(answer: ToolAnswer): string {
  const line = answer.stderr.trim().split("\n").find((l: string) => l.trim() !== "") ?? "";
  return line ? `: ${sanitize(line.replace(/^[\w-]+: /, ""), 160)}` : "";
}

/** The problem of a tool that did not run to its end, or failed; `secret`: it was given one (say nothing it said). */
function toolProblem(tool: string, answer: ToolAnswer, remedy: string, secret = false): KeychainProblem {
  if (answer.failure === "missing") return new KeychainProblem(`${tool} is not installed`, remedy);
  if (answer.failure === "denied") {
    return new KeychainProblem(
      `Deno's permissions do not allow running ${tool}`,
      `run with --allow-run=${tool} (the tasks in deno.json allow it), or use --token-storage file`,
    );
  }
  return new KeychainProblem(`${tool} failed (exit ${answer.code})${secret ? "" : toolSaid(answer)}`, remedy);
}

const SECRET_SERVICE_REMEDY =
  "unlock or start your keyring (GNOME Keyring, KWallet, KeePassXC), or use --token-storage file";

/** What a Secret Service error on the bus means; undefined for a message it does not know. */
function busProblem(said: string): KeychainProblem | undefined {
  if (
    /DBUS_SESSION_BUS_ADDRESS|connect to bus|open connection|autolaunch|No such file|Connection refused/i.test(said)
  ) {
    return new KeychainProblem(
      "the D-Bus session bus does not answer",
      "run it in your desktop session (where DBUS_SESSION_BUS_ADDRESS is set), or use --token-storage file",
    );
  }
  if (/not provided by any|ServiceUnknown|name has no owner/i.test(said)) {
    return new KeychainProblem(
      "no Secret Service runs on the session bus",
      "install and start GNOME Keyring, KWallet or KeePassXC, or use --token-storage file",
    );
  }
  if (/does not exist|UnknownObject|No such object|UnknownMethod/i.test(said)) {
    return new KeychainProblem(
      "the Secret Service has no default keyring",
      'create one (e.g. in "Passwords and Keys"), or use --token-storage file',
    );
  }
  return undefined;
}

/** The tools that read the default collection's `Locked` property (no prompt), and how to read their answer. */
const LOCKED_READERS: [string, string[], (out: string) => boolean | undefined][] = [
  [
    "busctl",
    ["--user", "get-property", "org.freedesktop.secrets", "/org/freedesktop/secrets/aliases/default"]
      .concat(["org.freedesktop.Secret.Collection", "Locked"]),
    (out) => /^b true/.test(out.trim()) ? true : /^b false/.test(out.trim()) ? false : undefined,
  ],
  [
    "dbus-send",
    ["--session", "--print-reply=literal", "--dest=org.freedesktop.secrets", "/org/freedesktop/secrets/aliases/default"]
      .concat(["org.freedesktop.DBus.Properties.Get", "string:org.freedesktop.Secret.Collection", "string:Locked"]),
    (out) => /boolean true/.test(out) ? true : /boolean false/.test(out) ? false : undefined,
  ],
];

/** Linux and the BSDs: the Secret Service (GNOME Keyring, KWallet, KeePassXC) through `secret-tool` (libsecret). */
const SECRET_SERVICE: KeychainBackend = {
  name: "the Secret Service",
  async probe(call, env) {
    if (!env("DBUS_SESSION_BUS_ADDRESS") && !env("XDG_RUNTIME_DIR")) {
      return new KeychainProblem(
        "there is no D-Bus session bus here",
        "run it in your desktop session (where DBUS_SESSION_BUS_ADDRESS is set), or use --token-storage file",
      );
    }
    for (const [tool, args, locked] of LOCKED_READERS) {
      const answer = await call(tool, args);
      if (answer.failure === "missing" || answer.failure === "denied") continue; // try the next reader
      const state = locked(answer.stdout);
      if (state === false) return undefined;
      if (state === true) {
        return new KeychainProblem(
          "the keyring is locked",
          'unlock it (log in to the desktop, or open "Passwords and Keys"), or use --token-storage file',
        );
      }
      return busProblem(answer.stderr) ?? toolProblem(tool, answer, SECRET_SERVICE_REMEDY);
    }
    return undefined; // nothing to read the property with: secret-tool's own answers (bounded) will tell
  },
  async store(call, account, label, secret) {
    const args = ["store", `--label=${label}`, "service", KEYCHAIN_SERVICE, "account", account];
    const answer = await call("secret-tool", args, secret);
    if (answer.code !== 0) throw secretToolProblem(answer, true);
  },
  async lookup(call, account) {
    const answer = await call("secret-tool", ["lookup", "service", KEYCHAIN_SERVICE, "account", account]);
    if (answer.code === 0) return answer.stdout;
    if (answer.code === 1 && answer.stderr.trim() === "") return undefined; // no such item
    throw secretToolProblem(answer);
  },
  async remove(call, account) {
    const answer = await call("secret-tool", ["clear", "service", KEYCHAIN_SERVICE, "account", account]);
    if (answer.code !== 0 && !(answer.code === 1 && answer.stderr.trim() === "")) throw secretToolProblem(answer);
  },
  async list(call) {
    // The attributes go to stderr; stdout has the secrets of unlocked items, which are not kept.
    const answer = await call("secret-tool", ["search", "--all", "service", KEYCHAIN_SERVICE]);
    if (answer.code !== 0) throw secretToolProblem(answer);
    return [...answer.stderr.matchAll(/^attribute\.account = (.*)$/gm)].map((match) => match[1]);
  },
};

/** What a failed `secret-tool` call means. */
function secretToolProblem(answer: ToolAnswer, secret = false): KeychainProblem {
  const remedy = answer.failure === "missing"
    ? "install secret-tool (Debian and Ubuntu: libsecret-tools; Fedora: libsecret), or use --token-storage file"
    : SECRET_SERVICE_REMEDY;
  if (/locked/i.test(answer.stderr)) {
    return new KeychainProblem("the keyring is locked", "unlock it, or use --token-storage file");
  }
  return (answer.failure ? undefined : busProblem(answer.stderr)) ?? toolProblem("secret-tool", answer, remedy, secret);
}

/** macOS's `security`, by its absolute path (never one found on PATH). */
const SECURITY = "/usr/bin/security";

/**
 * `security -i` reads one command a line with a 4096-byte buffer, so a line (its newline included) must
 * stay within 4095 bytes, or its tail runs as a second command (zalando/go-keyring#153).
 */
const SECURITY_LINE_MAX = 4095;

/** An argument of a `security -i` line: in double quotes, with `\` and `"` escaped (its split_line rules). Pure. */
function securityArg(text: string): string {
  if (/[\n\r\0]/.test(text)) throw new Error("a security -i argument cannot hold a line break or NUL");
  return `"${text.replace(/[\\"]/g, (c) => `\\${c}`)}"`;
}

/** The `security -i` line that stores an item: the secret goes on stdin, never in an argument. Pure. */
function addGenericPasswordLine(account: string, label: string, secret: string): string {
  const line = ["add-generic-password", "-U", "-s", securityArg(KEYCHAIN_SERVICE), "-a", securityArg(account)]
    .concat(["-l", securityArg(label), "-w", securityArg(secret)]).join(" ") + "\n";
  if (new TextEncoder().encode(line).length > SECURITY_LINE_MAX) {
    throw new KeychainProblem("the keychain item's name is too long for security -i", "use a shorter cache path");
  }
  return line;
}

/** What a failed `security` call means (its exit 44 is "no such item", handled by the callers). */
function securityProblem(answer: ToolAnswer, secret = false): KeychainProblem {
  const remedy = "unlock the login keychain (security unlock-keychain), or use --token-storage file";
  if (/interaction is not allowed|locked/i.test(answer.stderr) || answer.code === 36 || answer.code === 51) {
    return new KeychainProblem("the login keychain is locked, and no one can be asked to unlock it here", remedy);
  }
  return toolProblem(SECURITY, answer, remedy, secret);
}

/** A value of `security dump-keychain`: `"text"`, or `0xHEX  "text"` for one with other bytes. Pure. */
function dumpedValue(value: string): string | undefined {
  const hex = value.match(/^0x([0-9A-Fa-f]*)/);
  if (hex) return new TextDecoder().decode(Uint8Array.fromHex(hex[1].length % 2 ? `0${hex[1]}` : hex[1]));
  const quoted = value.match(/^"(.*)"\s*$/);
  return quoted ? quoted[1] : undefined;
}

/** macOS: the login keychain through `/usr/bin/security`, the secret on stdin (`security -i`). */
const MACOS_KEYCHAIN: KeychainBackend = {
  name: "the login keychain",
  probe() {
    // Nothing reads the keychain's lock without possibly asking for its password: the bounded calls tell.
    return Promise.resolve(undefined);
  },
  async store(call, account, label, secret) {
    const answer = await call(SECURITY, ["-i"], addGenericPasswordLine(account, label, secret));
    if (answer.code !== 0) throw securityProblem(answer, true);
  },
  async lookup(call, account) {
    const answer = await call(SECURITY, ["find-generic-password", "-s", KEYCHAIN_SERVICE, "-a", account, "-w"]);
    if (answer.code === 0) return answer.stdout.replace(/\n$/, "");
    if (answer.code === 44) return undefined;
    throw securityProblem(answer);
  },
  async remove(call, account) {
    const answer = await call(SECURITY, ["delete-generic-password", "-s", KEYCHAIN_SERVICE, "-a", account]);
    if (answer.code !== 0 && answer.code !== 44) throw securityProblem(answer);
  },
  async list(call) {
    const answer = await call(SECURITY, ["dump-keychain"]);
    if (answer.code !== 0) throw securityProblem(answer);
    const accounts: string[] = [];
    for (const item of answer.stdout.split(/^keychain: /m)) {
      const attribute = (name: string) =>
        dumpedValue(item.match(new RegExp(`^\\s*"${name}"<blob>=(.*)$`, "m"))?.[1] ?? "");
      const account = attribute("acct");
      if (/^class: "genp"$/m.test(item) && attribute("svce") === KEYCHAIN_SERVICE && account) accounts.push(account);
    }
    return accounts;
  },
};

/** Windows PowerShell 5.1, present on every Windows 10 and 11. */
const POWERSHELL = "powershell.exe";

/** Credential Manager's generic credentials, reached from PowerShell through advapi32 (no secret in any argument). */
const CREDENTIALS_CSHARP = String.raw`
using System; using System.Runtime.InteropServices; using System.Collections.Generic;
public static class OauthLoginCredentials {
  [StructLayout(LayoutKind.Sequential, CharSet = CharSet.Unicode)]
  struct Credential {
    public uint Flags; public uint Type; public string TargetName; public string Comment;
    public System.Runtime.InteropServices.ComTypes.FILETIME LastWritten; public uint BlobSize; public IntPtr Blob;
    public uint Persist; public uint AttributeCount; public IntPtr Attributes; public string TargetAlias;
    public string UserName;
  }
  [DllImport("advapi32.dll", EntryPoint = "CredWriteW", CharSet = CharSet.Unicode, SetLastError = true)]
  static extern bool CredWrite(ref Credential credential, uint flags);
  [DllImport("advapi32.dll", EntryPoint = "CredReadW", CharSet = CharSet.Unicode, SetLastError = true)]
  static extern bool CredRead(string target, uint type, uint flags, out IntPtr credential);
  [DllImport("advapi32.dll", EntryPoint = "CredDeleteW", CharSet = CharSet.Unicode, SetLastError = true)]
  static extern bool CredDelete(string target, uint type, uint flags);
  [DllImport("advapi32.dll", EntryPoint = "CredEnumerateW", CharSet = CharSet.Unicode, SetLastError = true)]
  static extern bool CredEnumerate(string filter, uint flags, out uint count, out IntPtr credentials);
  [DllImport("advapi32.dll")] static extern void CredFree(IntPtr buffer);
  const uint GENERIC = 1, LOCAL_MACHINE = 2;
  public static int Write(string target, string user, string comment, byte[] blob) {
    var c = new Credential(); c.Type = GENERIC; c.TargetName = target; c.UserName = user; c.Comment = comment;
    c.Persist = LOCAL_MACHINE; c.BlobSize = (uint)blob.Length; c.Blob = Marshal.AllocHGlobal(Math.Max(blob.Length, 1));
    try { Marshal.Copy(blob, 0, c.Blob, blob.Length); return CredWrite(ref c, 0) ? 0 : Marshal.GetLastWin32Error(); }
    finally { Marshal.FreeHGlobal(c.Blob); }
  }
  public static byte[] Read(string target, out int error) {
    IntPtr p; error = 0;
    if (!CredRead(target, GENERIC, 0, out p)) { error = Marshal.GetLastWin32Error(); return null; }
    try {
      var c = (Credential)Marshal.PtrToStructure(p, typeof(Credential));
      var blob = new byte[c.BlobSize]; if (blob.Length > 0) Marshal.Copy(c.Blob, blob, 0, blob.Length); return blob;
    } finally { CredFree(p); }
  }
  public static int Delete(string target) { return CredDelete(target, GENERIC, 0) ? 0 : Marshal.GetLastWin32Error(); }
  public static string[] List(string filter, out int error) {
    uint count; IntPtr list; error = 0; var targets = new List<string>();
    if (!CredEnumerate(filter, 0, out count, out list)) { error = Marshal.GetLastWin32Error(); return targets.ToArray(); }
    try {
      for (int i = 0; i < count; i++) {
        var c = (Credential)Marshal.PtrToStructure(Marshal.ReadIntPtr(list, i * IntPtr.Size), typeof(Credential));
        targets.Add(c.TargetName);
      }
    } finally { CredFree(list); }
    return targets.ToArray();
  }
}`;

/** A PowerShell single-quoted literal: each quote (the typographic ones count too) doubled. Pure. */
function powershellString(text: string): string {
  return `'${text.replace(/['\u2018\u2019\u201a\u201b]/g, (c) => c + c)}'`;
}

/**
 * The PowerShell script of one Credential Manager operation. Exit 0: done; 2: no such credential
 * (Win32 1168); 3: another Win32 error, its number on stderr. Secrets come and go in base64 on
 * stdin and stdout, never in the script. Pure.
 */
function credentialScript(operation: string): string {
  return [
    "$ErrorActionPreference = 'Stop'",
    `if (-not ('OauthLoginCredentials' -as [type])) { Add-Type -TypeDefinition @'\n${CREDENTIALS_CSHARP}\n'@ }`,
    'function Fail($e) { if ($e -eq 1168) { exit 2 }; [Console]::Error.WriteLine("Windows error $e"); exit 3 }',
    operation,
  ].join("\n");
}

/** `powershell.exe`'s arguments for a script: `-EncodedCommand`, base64 of its UTF-16LE text. Pure. */
function powershellArgs(script: string): string[] {
  const utf16 = new Uint8Array(script.length * 2);
  for (let i = 0; i < script.length; i++) {
    utf16[2 * i] = script.charCodeAt(i) & 0xff;
    utf16[2 * i + 1] = script.charCodeAt(i) >> 8;
  }
  return [
    "-NoLogo",
    "-NoProfile",
    "-NonInteractive",
    "-ExecutionPolicy",
    "Bypass",
    "-EncodedCommand",
    utf16.toBase64(),
  ];
}

/** What a failed PowerShell call means. */
function credentialProblem(answer: ToolAnswer): KeychainProblem {
  const remedy =
    "sign in to Windows interactively (Credential Manager needs a logon session), or use --token-storage file";
  const error = answer.stderr.match(/Windows error (\d+)/)?.[1];
  if (error === "1312") return new KeychainProblem("Credential Manager has no logon session here", remedy);
  if (error) return new KeychainProblem(`Credential Manager failed (Windows error ${error})`, remedy);
  return toolProblem(POWERSHELL, answer, remedy, true);
}

/** Windows: Credential Manager's generic credentials (target `oauth-login:ACCOUNT`), through PowerShell. */
const CREDENTIAL_MANAGER: KeychainBackend = {
  name: "Credential Manager",
  probe() {
    return Promise.resolve(undefined); // Credential Manager never prompts; the bounded calls tell
  },
  async store(call, account, label, secret) {
    const target = powershellString(`${KEYCHAIN_SERVICE}:${account}`);
    const user = powershellString((itemUser(account) ?? "-").slice(0, 500));
    const script = credentialScript(
      "$b = [Convert]::FromBase64String([Console]::In.ReadToEnd().Trim())\n" +
        `$e = [OauthLoginCredentials]::Write(${target}, ${user}, ${
          powershellString(label)
        }, $b); if ($e -ne 0) { Fail $e }`,
    );
    const answer = await call(POWERSHELL, powershellArgs(script), `${new TextEncoder().encode(secret).toBase64()}\n`);
    if (answer.code !== 0) throw credentialProblem(answer);
  },
  async lookup(call, account) {
    const target = powershellString(`${KEYCHAIN_SERVICE}:${account}`);
    const script = credentialScript(
      `$e = 0; $b = [OauthLoginCredentials]::Read(${target}, [ref]$e); if ($e -ne 0) { Fail $e }\n` +
        "[Console]::Out.Write([Convert]::ToBase64String($b))",
    );
    const answer = await call(POWERSHELL, powershellArgs(script));
    if (answer.code === 2) return undefined;
    if (answer.code !== 0) throw credentialProblem(answer);
    return new TextDecoder().decode(Uint8Array.fromBase64(answer.stdout.trim()));
  },
  async remove(call, account) {
    const target = powershellString(`${KEYCHAIN_SERVICE}:${account}`);
    const script = credentialScript(`$e = [OauthLoginCredentials]::Delete(${target}); if ($e -ne 0) { Fail $e }`);
    const answer = await call(POWERSHELL, powershellArgs(script));
    if (answer.code !== 0 && answer.code !== 2) throw credentialProblem(answer);
  },
  async list(call) {
    const script = credentialScript(
      `$e = 0; $t = [OauthLoginCredentials]::List(${powershellString(`${KEYCHAIN_SERVICE}:*`)}, [ref]$e)\n` +
        "if ($e -ne 0) { Fail $e }\n" +
        "foreach ($x in $t) { [Console]::Out.WriteLine([Convert]::ToBase64String([Text.Encoding]::UTF8.GetBytes($x))) }",
    );
    const answer = await call(POWERSHELL, powershellArgs(script));
    if (answer.code === 2) return [];
    if (answer.code !== 0) throw credentialProblem(answer);
    const prefix = `${KEYCHAIN_SERVICE}:`;
    const targets: string[] = answer.stdout.split(/\r?\n/).filter(Boolean)
      .map((line: string) => new TextDecoder().decode(Uint8Array.fromBase64(line.trim())));
    return targets.filter((target) => target.startsWith(prefix)).map((target) => target.slice(prefix.length));
  },
};

/** The platform's keychain, or undefined where the tool knows none (`os` as `Deno.build.os` names it). */
function backendFor(os: string): KeychainBackend | undefined {
  if (os === "darwin") return MACOS_KEYCHAIN;
  if (os === "windows") return CREDENTIAL_MANAGER;
  return ["linux", "freebsd", "openbsd", "netbsd", "illumos", "solaris", "android"].includes(os)
    ? SECRET_SERVICE
    : undefined;
}

// ── One process's use of the keychain: the first problem remembered ──

/** What one process knows of the keychain. */
interface KeychainSession {
  /** The first problem met: no keychain call is made after it. */
  problem?: KeychainProblem;
  /** The probe, made once. */
  probed?: Promise<void>;
  /** The keys read or made, by account. */
  keys: Map<string, CryptoKey>;
}

/** The session of each run's edges (one run a process, several in tests). */
const keychainSessions = new WeakMap<object, KeychainSession>();

function keychainSession(deps: Deps): KeychainSession {
  let session = keychainSessions.get(deps);
  if (!session) keychainSessions.set(deps, session = { keys: new Map() });
  return session;
}

/** Runs `deps.runTool` within the deadline, through the one wait; a call past it is killed and is a problem. */
function toolCall(deps: Deps): ToolCall {
  const ms = deps.os === "windows" ? KEYCHAIN_DEADLINE_WINDOWS_MS : KEYCHAIN_DEADLINE_MS;
  return async (command, args, stdin) => {
    const stop = new AbortController();
    const running = deps.runTool!(command, args, { stdin, signal: stop.signal });
    try {
      return (await wait(deps, {
        ms,
        until: running,
        interrupted: "Interrupted",
        onTimeout: () =>
          new KeychainProblem(
            `the keychain did not answer within ${ms / 1000} seconds`,
            "check that it is not waiting for a password on your desktop, or use --token-storage file",
          ),
      }))!;
    } finally {
      stop.abort(); // ends the tool if it still runs (the deadline, Ctrl-C); then it is reaped
      await running.catch(() => {});
    }
  };
}

/**
 * Runs one keychain operation, after the probe (once a process): none once a problem is known, and a
 * problem it meets is remembered for the rest of the process. Throws `KeychainProblem`.
 */
async function withKeychain<T>(
  deps: Deps,
  operation: (backend: KeychainBackend, call: ToolCall) => Promise<T>,
): Promise<T> {
  const session = keychainSession(deps);
  const backend = backendFor(deps.os);
  try {
    if (session.problem) throw session.problem;
    if (!backend || !deps.runTool) {
      throw new KeychainProblem("this system has no keychain the tool can use", "use --token-storage file");
    }
    session.probed ??= backend.probe(toolCall(deps), deps.env).then((problem) => {
      if (problem) throw problem;
    });
    await session.probed;
    return await operation(backend, toolCall(deps));
  } catch (error) {
    if (error instanceof KeychainProblem) session.problem ??= error;
    throw error;
  }
}

/** Why the keychain cannot be used here, or undefined when it answers (probed once a process). */
async function keychainProblem(deps: Deps): Promise<KeychainProblem | undefined> {
  try {
    await withKeychain(deps, () => Promise.resolve());
    return undefined;
  } catch (error) {
    if (error instanceof KeychainProblem) return error;
    throw error;
  }
}

// ── The real edge ──

/**
 * The real edge behind `Deps.runTool`: runs a keychain tool with `stdin` written and closed, and its
 * output read (at most 4 MiB each). When `signal` aborts, its process group is killed (the process
 * alone where Deno's permissions allow no more, and on Windows). A tool Deno's permissions do not let
 * it run is "denied" without asking (a prompt would wait for a person); one not installed is "missing".
 */
async function runTool(
  command: string,
  args: string[],
  options: { stdin?: string; signal: AbortSignal },
): Promise<ToolAnswer> {
  const none = { code: null, stdout: "", stderr: "" };
  if (Deno.permissions.querySync({ name: "run", command }).state !== "granted") {
    return { ...none, failure: onPath(command, (name) => Deno.env.get(name)) ? "denied" : "missing" };
  }
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(command, {
      args,
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
      detached: Deno.build.os !== "windows", // its own process group, killed whole
      env: { LC_ALL: "C" }, // messages in English, read by their words
    }).spawn();
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return { ...none, failure: "missing" };
    if (error instanceof Deno.errors.NotCapable || error instanceof Deno.errors.PermissionDenied) {
      return { ...none, failure: "denied" };
    }
    throw error;
  }
  const stdout = readToolOutput(child.stdout), stderr = readToolOutput(child.stderr);
  const writer = child.stdin.getWriter();
  const writing = (async () => {
    if (options.stdin) await writer.write(new TextEncoder().encode(options.stdin));
    await writer.close();
  })().catch(() => {}); // the tool may exit without reading
  const kill = () => {
    try {
      if (Deno.build.os === "windows" || Deno.permissions.querySync({ name: "run" }).state !== "granted") {
        child.kill("SIGKILL");
      } else Deno.kill(-child.pid, "SIGKILL");
    } catch { /* already gone */ }
    stdout.cancel();
    stderr.cancel();
  };
  if (options.signal.aborted) kill();
  options.signal.addEventListener("abort", kill, { once: true });
  try {
    const status = await child.status;
    // A child of the tool may still hold the pipes: what came by the time the tool ended, and a moment more.
    const grace = delay(100);
    await Promise.race([Promise.all([stdout.text, stderr.text]), grace.done]);
    grace.cancel();
    stdout.cancel();
    stderr.cancel();
    await writing;
    const killed = options.signal.aborted;
    return { code: killed ? null : status.code, stdout: await stdout.text, stderr: await stderr.text };
  } finally {
    options.signal.removeEventListener("abort", kill);
  }
}

/** Reads a stream as text, at most 4 MiB, until it ends or `cancel()`. */
function readToolOutput(stream: ReadableStream<Uint8Array>): { text: Promise<string>; cancel: () => void } {
  const reader = stream.getReader();
  const text = (async () => {
    const chunks: Uint8Array[] = [];
    let size = 0;
    try {
      for (let read = await reader.read(); !read.done; read = await reader.read()) {
        if (size < 4 * 1024 * 1024) chunks.push(read.value);
        size += read.value.length;
      }
    } catch { /* cancelled */ }
    const bytes = new Uint8Array(chunks.reduce((n, chunk) => n + chunk.length, 0));
    chunks.reduce((offset, chunk) => (bytes.set(chunk, offset), offset + chunk.length), 0);
    return new TextDecoder().decode(bytes);
  })();
  return { text, cancel: () => void reader.cancel().catch(() => {}) };
}

// ── 20 Long-lived secrets: sealed under a key the keychain keeps, and what an entry keeps where ────────────────────

/*
 * An entry's long-lived secrets (its refresh token and DPoP key; the secret of a client the tool
 * registered) are never in its file in the clear unless the person chose the file. They are sealed
 * with AES-256-GCM under a random key, and only the key goes to the platform's keychain, one item
 * per file (as Chromium and Electron's safeStorage keep their data): the same code on every platform,
 * no size limit (2,560 bytes in Credential Manager, about 3.9 KB through `security -i`, 8 KiB through
 * `secret-tool`), and a refresh reads the keychain once and writes nothing to it, so a keychain that
 * stalls mid-refresh can never lose a rotated refresh token. The entry file keeps the rest (issuer,
 * expiry, scope, the short-lived access token), so the cached `token` path never touches the keychain.
 */

/** Secrets sealed under the key of a keychain item: what a file holds in their place. */
type Sealed = NonNullable<TokenSet["sealed"]>;

/** The kinds of long-lived secret: an entry's refresh token and DPoP key, a registered client's secret. */
type SecretKind = Sealed["holds"][number];

/** Long-lived secrets by kind, each as text (a JWK as its JSON). */
type Secrets = Partial<Record<SecretKind, string>>;

/** Where an entry's long-lived secrets go (`--token-storage`). */
type TokenStorage = Config["tokenStorage"];

/**
 * The entry fields that hold long-lived secrets, each with its kind and its text form. A new kind of
 * secret (a registered client's `client_secret`) is one more row here.
 */
const ENTRY_SECRETS: readonly { field: "refreshToken" | "dpopKey"; kind: SecretKind; json: boolean }[] = [
  { field: "refreshToken", kind: "refresh_token", json: false },
  { field: "dpopKey", kind: "dpop_key", json: true },
];

/** Whether an entry holds a secret of this kind, in its file or sealed; asks no keychain. Pure, on the cached path. */
function holds(entry: TokenSet, kind: SecretKind): boolean {
  const row = ENTRY_SECRETS.find((secret) => secret.kind === kind);
  return (row !== undefined && !!entry[row.field]) || (entry.sealed?.holds.includes(kind) ?? false);
}

/** The entry's long-lived secrets that are in the clear, by kind. Pure. */
function secretsOf(entry: TokenSet): Secrets {
  const secrets: Secrets = {};
  for (const { field, kind, json } of ENTRY_SECRETS) {
    const value = entry[field];
    if (value) secrets[kind] = json ? JSON.stringify(value) : value as string;
  }
  return secrets;
}

/** The entry without its long-lived secrets, where they are kept, or why. Pure. */
function withoutSecrets(entry: TokenSet): TokenSet {
  const rest: Partial<TokenSet> = { ...entry };
  for (const { field } of ENTRY_SECRETS) delete rest[field];
  delete rest.sealed;
  delete rest.keptInFile;
  return rest as TokenSet;
}

/** The entry with these secrets in their fields. Pure. */
function withSecrets(entry: TokenSet, secrets: Secrets): TokenSet {
  const open: Record<string, unknown> = { ...entry };
  for (const { field, kind, json } of ENTRY_SECRETS) {
    const text = secrets[kind];
    if (text !== undefined) open[field] = json ? JSON.parse(text) : text;
  }
  return open as unknown as TokenSet;
}

// ── Items: their names, and what a person sees in their keychain app ──

/** Whose secrets an item protects: the issuer, client and user, what they are, and the file that names the item. */
interface ItemOwner {
  issuer: string;
  clientId: string;
  user?: string;
  /** "tokens": a cached login's; "client": a registered client's. */
  kind: "tokens" | "client";
  /** The file whose secrets the item's key seals. */
  path: string;
}

/** A component of an account: `%`, `|`, quotes, backslashes and control characters percent-encoded. Pure. */
function accountPart(text: string): string {
  const escape = (c: string) =>
    [...new TextEncoder().encode(c)].map((b) => `%${b.toString(16).toUpperCase().padStart(2, "0")}`).join("");
  // deno-lint-ignore no-control-regex
  return text.replace(/[%|"'`\\\x00-\x1f\x7f-\x9f\u2018-\u201e]/g, escape);
}

/**
 * The item's account: issuer, client, user, what it protects and its file, joined by `|`; two files
 * never share an item, a person recognises it in Seahorse, Keychain Access or Credential Manager, and
 * `logout --all` can tell when its file is gone. Pure.
 */
function itemAccount(owner: ItemOwner): string {
  return [owner.issuer, owner.clientId, owner.user ?? "-", owner.kind, owner.path].map(accountPart).join("|");
}

/** The file an account names (see `itemAccount`), or undefined for an account of another shape. Pure. */
function itemFile(account: string): string | undefined {
  const parts = account.split("|");
  if (parts.length !== 5) return undefined;
  try {
    return decodeURIComponent(parts[4]);
  } catch {
    return undefined;
  }
}

/** The label a keychain app shows for the item (control characters dropped). Pure. */
function itemLabel(owner: ItemOwner): string {
  const what = owner.kind === "tokens" ? "key to the cached tokens" : "key to the client's secret";
  const who = owner.user ? ` of ${owner.user}` : "";
  // deno-lint-ignore no-control-regex
  const control = /[\x00-\x1f\x7f-\x9f]/g;
  return `oauth-login: ${what}${who} at ${owner.issuer} (client ${owner.clientId})`.replace(control, " ");
}

/** The owner of an entry's item: the entry's issuer, client and user, and its file. */
function entryOwner(entry: TokenSet, deps: Pick<Deps, "storage">, name: string): ItemOwner {
  return {
    issuer: entry.issuer,
    clientId: entry.clientId,
    user: (entry.user ?? entry.subject)?.slice(0, 200), // a server's name for the person: no item too long to store
    kind: "tokens",
    path: `${deps.storage.dir}/${name}.json`,
  };
}

/** The user an account names, for Credential Manager's user name column. Pure. */
function itemUser(account: string): string | undefined {
  const user = account.split("|")[2];
  try {
    return user && user !== "-" ? decodeURIComponent(user) : undefined;
  } catch {
    return undefined;
  }
}

// ── Sealing: AES-256-GCM under the item's key ──

function base64url(bytes: Uint8Array): string {
  return bytes.toBase64({ alphabet: "base64url", omitPadding: true });
}

function fromBase64url(text: string): Uint8Array<ArrayBuffer> {
  return Uint8Array.fromBase64(text, { alphabet: "base64url" }) as Uint8Array<ArrayBuffer>;
}

/** A new random 256-bit key: the CryptoKey, and its text for the keychain (base64url). */
async function newSealingKey(): Promise<{ key: CryptoKey; text: string }> {
  const raw = crypto.getRandomValues(new Uint8Array(32));
  return { key: await importSealingKey(base64url(raw)), text: base64url(raw) };
}

/** A key as the keychain holds it; undefined when the text is not one (someone changed the item). */
async function importSealingKey(text: string): Promise<CryptoKey> {
  const raw = fromBase64url(text.trim());
  if (raw.length !== 32) throw new Error("not a 256-bit key");
  return await crypto.subtle.importKey("raw", raw, "AES-GCM", false, ["encrypt", "decrypt"]);
}

/** Seals secrets under `key`, bound to the item's account (the additional data): a fresh 96-bit IV each time. */
async function seal(secrets: Secrets, item: string, key: CryptoKey): Promise<Sealed> {
  const iv = crypto.getRandomValues(new Uint8Array(12));
  const plain = new TextEncoder().encode(JSON.stringify(secrets));
  const additionalData = new TextEncoder().encode(item);
  const data = await crypto.subtle.encrypt({ name: "AES-GCM", iv, additionalData }, key, plain);
  return {
    item,
    holds: Object.keys(secrets).sort() as SecretKind[],
    iv: base64url(iv),
    data: base64url(new Uint8Array(data)),
  };
}

/** The sealed secrets, or undefined when `key` does not open them (another key, or a changed file). */
async function unseal(sealed: Sealed, key: CryptoKey): Promise<Secrets | undefined> {
  try {
    const additionalData = new TextEncoder().encode(sealed.item);
    const plain = await crypto.subtle.decrypt(
      { name: "AES-GCM", iv: fromBase64url(sealed.iv), additionalData },
      key,
      fromBase64url(sealed.data),
    );
    const secrets = JSON.parse(new TextDecoder().decode(plain));
    return secrets && typeof secrets === "object" ? secrets : undefined;
  } catch {
    return undefined;
  }
}

/** Sealed secrets whose key is gone from the keychain, or does not open them: the session cannot go on. */
class SecretsGone extends LoginError {
  /** Why, e.g. "its key is no longer in the keychain". */
  readonly reason: string;
  constructor(reason: string, message = reason) {
    super("login_required", message, { hint: 'sign in again with "oauth-login login"' });
    this.reason = reason;
  }
}

// ── Sealing, opening and forgetting secrets: the general API ──

/**
 * Seals secrets for a file under the key of its item: the key the process already holds for that item,
 * else a new one, stored first (one keychain write). Throws `KeychainProblem`.
 */
async function sealSecrets(
  owner: ItemOwner,
  secrets: Secrets,
  deps: Deps,
  item: string = itemAccount(owner),
): Promise<Sealed> {
  return await seal(secrets, item, await itemKey(owner, deps, item));
}

/** The key of an item: the one this process read or made, else a new one stored in the keychain. */
async function itemKey(owner: ItemOwner, deps: Deps, item: string = itemAccount(owner)): Promise<CryptoKey> {
  const keys = keychainSession(deps).keys;
  const known = keys.get(item);
  if (known) return known;
  const { key, text } = await newSealingKey();
  await withKeychain(deps, (backend, call) => backend.store(call, item, itemLabel(owner), text));
  keys.set(item, key);
  return key;
}

/**
 * The sealed secrets, by kind: opened with the key this process holds for the item, else the one the
 * keychain has (one read). Throws `KeychainProblem`, or `SecretsGone` when the item is gone or its key
 * does not open them.
 */
async function openSealed(sealed: Sealed, deps: Deps): Promise<Secrets> {
  const keys = keychainSession(deps).keys;
  const known = keys.get(sealed.item);
  const opened = known && await unseal(sealed, known);
  if (opened) return opened;
  const text = await withKeychain(deps, (backend, call) => backend.lookup(call, sealed.item));
  if (text === undefined) throw new SecretsGone("its key is no longer in the keychain");
  const key = await importSealingKey(text).catch(() => undefined);
  const secrets = key && await unseal(sealed, key);
  if (!key || !secrets) throw new SecretsGone("the key in the keychain does not open it");
  keys.set(sealed.item, key);
  return secrets;
}

/** One secret of a sealed set, by kind (see `openSealed`). */
async function sealedSecret(sealed: Sealed, kind: SecretKind, deps: Deps): Promise<string | undefined> {
  return sealed.holds.includes(kind) ? (await openSealed(sealed, deps))[kind] : undefined;
}

/** Removes an item of the tool's own (service `oauth-login`) from the keychain. Throws `KeychainProblem`. */
async function forgetItem(item: string, deps: Deps): Promise<void> {
  keychainSession(deps).keys.delete(item);
  await withKeychain(deps, (backend, call) => backend.remove(call, item));
}

// ── What an entry keeps where ──

/** The error that `--token-storage keychain` gives instead of falling back. */
function keychainRequired(problem: KeychainProblem, doing: string): LoginError {
  return new LoginError("failure", `Cannot ${doing} in the keychain (--token-storage keychain): ${problem.reason}`, {
    hint: problem.remedy.replace(/, or use --token-storage file$/, ", or use --token-storage auto or file"),
  });
}

/**
 * Before a sign-in: with `--token-storage keychain`, a keychain that cannot be used is an error now,
 * before the browser opens (its tokens could not be kept): the probe, and the read of an item that
 * does not exist (where nothing can be probed, macOS and Windows, that read is what tells).
 */
async function keychainReady(config: Pick<Config, "tokenStorage">, deps: Deps): Promise<void> {
  if (config.tokenStorage !== "keychain") return;
  try {
    await withKeychain(deps, (backend, call) => backend.lookup(call, `${KEYCHAIN_SERVICE} probe`));
  } catch (error) {
    if (error instanceof KeychainProblem) throw keychainRequired(error, "keep the tokens");
    throw error;
  }
}

/** The long-lived secrets of an entry as words: "refresh token", "DPoP key", "refresh token and DPoP key". Pure. */
function secretWords(kinds: SecretKind[]): string {
  const names: Record<SecretKind, string> = {
    refresh_token: "refresh token",
    dpop_key: "DPoP key",
    client_secret: "client secret",
  };
  const words = kinds.map((kind) => names[kind]);
  return words.length < 2 ? words.join("") : `${words.slice(0, -1).join(", ")} and ${words.at(-1)}`;
}

/**
 * Before a refresh (under the entry's lock): the keychain item an entry's secrets will be sealed under
 * once refreshed: the one they are sealed under now, or for an entry whose secrets are in its file (an
 * earlier version's, or one saved where no keychain answered) a new one, made now, before any request
 * (`auto`: undefined when no keychain answers; `keychain`: an error). Undefined for `file`.
 */
async function refreshItem(config: Config, deps: Deps, name: string, entry: TokenSet): Promise<string | undefined> {
  if (config.tokenStorage === "file") return undefined;
  if (entry.sealed) return entry.sealed.item;
  const owner = entryOwner(entry, deps, name);
  try {
    await itemKey(owner, deps);
    return itemAccount(owner);
  } catch (error) {
    if (!(error instanceof KeychainProblem)) throw error;
    if (config.tokenStorage === "keychain") throw keychainRequired(error, "keep the refresh token");
    return undefined;
  }
}

/**
 * Writes an entry's file (every writer holds its lock): its long-lived secrets sealed under its item's
 * key (`keychain`, or `auto` where a keychain answers; `item`: the item to use, see `refreshItem`), else
 * in the file, which `auto` says the first time for that entry. An entry with no secret in the clear, or
 * `asIs` (what changes is not a secret: DPoP nonces), is written as it is. The item `previous` (what the
 * file held) used, if no longer used, is then removed.
 */
async function saveEntry(
  config: Config,
  deps: Deps,
  name: string,
  entry: TokenSet,
  context: { previous?: TokenSet; item?: string; asIs?: boolean } = {},
): Promise<TokenSet> {
  const { previous } = context;
  const secrets = context.asIs ? {} : secretsOf(entry);
  const kinds = Object.keys(secrets) as SecretKind[];
  let stored: TokenSet = (entry.sealed && kinds.length === 0) || context.asIs ? entry : withoutSecrets(entry);
  if (kinds.length > 0 && config.tokenStorage === "file") {
    stored = { ...entry, sealed: undefined, keptInFile: "chosen" };
  } else if (kinds.length > 0) {
    try {
      const owner = entryOwner(entry, deps, name);
      stored = { ...stored, sealed: await sealSecrets(owner, secrets, deps, context.item ?? itemAccount(owner)) };
    } catch (error) {
      if (!(error instanceof KeychainProblem)) throw error;
      if (config.tokenStorage === "keychain") throw keychainRequired(error, "keep the tokens");
      // The first time for this entry: a new one, an earlier version's, or one kept in the file by choice until now.
      if (previous?.keptInFile === undefined || previous.keptInFile === "chosen") {
        say(
          deps,
          `warning: Keeping the ${
            secretWords(kinds)
          } in the token cache file (readable only by you), not in the keychain: ${error.reason}`,
        );
      }
      stored = { ...entry, sealed: undefined, keptInFile: error.reason };
    }
  }
  await deps.storage.write(`${name}.json`, JSON.stringify(stored, null, 2) + "\n");
  const unused = previous?.sealed?.item;
  if (unused && unused !== stored.sealed?.item) await forgetItem(unused, deps).catch(() => {}); // else logout --all
  return stored;
}

/**
 * Removes an entry's file, then its keychain item. Returns false when the item could not be removed (no
 * keychain answers: `logout --all` removes it later).
 */
async function removeEntry(name: string, entry: TokenSet | undefined, deps: Deps): Promise<boolean> {
  await deps.storage.remove(`${name}.json`);
  const item = entry?.sealed?.item;
  return !item || await forgetItem(item, deps).then(() => true, () => false);
}

/**
 * The entry with its sealed secrets opened (one keychain read, at most, a process); an entry whose
 * secrets are in its file as it is. Throws a "failure" `LoginError` when the keychain cannot be read,
 * and `SecretsGone` when the secrets cannot be had any more. `doing`: what they are needed for.
 */
async function openEntry(entry: TokenSet, deps: Deps, doing = "refresh the access token"): Promise<TokenSet> {
  if (!entry.sealed) return entry;
  const words = secretWords(entry.sealed.holds);
  try {
    return withSecrets(entry, await openSealed(entry.sealed, deps));
  } catch (error) {
    if (error instanceof SecretsGone) {
      throw new SecretsGone(error.reason, `Cannot ${doing}: its ${words} cannot be read any more (${error.reason})`);
    }
    if (!(error instanceof KeychainProblem)) throw error;
    throw new LoginError(
      "failure",
      `Cannot ${doing}: its ${words} ${
        entry.sealed.holds.length > 1 ? "are" : "is"
      } in the keychain, and ${error.reason}`,
      {
        hint: `${
          error.remedy.replace(/, or use --token-storage file$/, "")
        }; or sign in again with "oauth-login login"`,
      },
    );
  }
}

/**
 * `logout --all`: removes the keychain items of the tool's own service whose file, in this cache
 * folder, is gone or no longer sealed under them. Returns how many; nothing when no keychain answers.
 */
async function forgetOrphanItems(deps: Deps): Promise<number> {
  // Only a folder named absolutely: a relative one names another folder from elsewhere.
  if (!/^(?:\/|[A-Za-z]:[\\/])/.test(deps.storage.dir) || (await keychainProblem(deps))) return 0;
  let removed = 0;
  for (const item of await withKeychain(deps, (backend, call) => backend.list(call)).catch(() => [])) {
    const file = itemFile(item);
    const prefix = `${deps.storage.dir}/`;
    const name = file?.startsWith(prefix) ? file.slice(prefix.length).replace(/\.json$/, "") : undefined;
    if (!name || !CACHE_FILE.test(`${name}.json`)) continue; // another folder's, or not an entry's or a registration's
    const text = await deps.storage.read(`${name}.json`, { allowShared: true }).catch(() => null);
    if (text === null) continue; // a file the tool does not trust: leave its item alone
    const sealed = text === undefined
      ? undefined
      : name.endsWith(".client")
      ? (parseJsonObject(text)?.sealed as Sealed | undefined)
      : parseTokenSet(text)?.sealed;
    if (sealed?.item === item) continue;
    if (await forgetItem(item, deps).then(() => true, () => false)) removed++;
  }
  return removed;
}

// ── 21 Renewal and revocation: refresh under the lock, other resources, logout at the server ───────────────────────

/** Remembers the nonces a DPoP server sent, in the entry, under its lock (another process may have refreshed it). */
async function rememberNonces(config: Config, deps: Deps, name: string, state: DpopState): Promise<void> {
  const lock = await lockEntry(name, deps);
  try {
    const current = await readEntry(config, deps, name);
    if (!current || !holds(current, "dpop_key")) return;
    const nonces = { ...current.dpopNonces, ...state.nonces };
    if (JSON.stringify(nonces) === JSON.stringify(current.dpopNonces ?? {})) return;
    // The same key (another login may have made a new one): its sealed copy opens with the key already read.
    const open = await openEntry(current, deps, "remember the DPoP nonces").catch(() => undefined);
    if (open?.dpopKey?.d !== state.jwk.d) return; // (nonces only spare a round trip: never an error)
    await saveEntry(config, deps, name, { ...current, dpopNonces: nonces }, { asIs: true });
  } finally {
    lock.release();
  }
}

/**
 * The client authentication for refreshing a cached entry: the one configured (`--client-auth`,
 * `OAUTH_CLIENT_AUTH`), else the one the entry was stored with, so that the client authenticates as
 * it did at login (RFC 6749 §6), unless a client secret has since been added or removed (then the
 * metadata decides, as at login). Pure.
 */
function refreshClientAuth(
  entry: Pick<TokenSet, "authMethod">,
  config: Pick<Config, "clientSecret" | "clientAuth">,
): ClientAuthMethod | undefined {
  if (config.clientAuth) return config.clientAuth;
  return (entry.authMethod === "none") === !config.clientSecret ? entry.authMethod : undefined;
}

/** Refreshes a cached entry (RFC 6749 §6); the new entry keeps what the response leaves out. */
async function refreshTokenSet(
  entry: TokenSet,
  config: Config,
  deps: Deps,
  trace?: Trace,
  /** RFC 8707 §2.2: the resource the new access token is for (default: the entry's own). */
  resource = entry.resource,
  /** RFC 6749 §6: a narrower scope for the new access token (default: the grant's own). */
  scope?: string,
): Promise<TokenSet> {
  const oauth = await lib();
  const issuer = await issuerFor(
    entry.metadata as unknown as Oauth.AuthorizationServer,
    {
      clientId: config.clientId,
      clientSecret: config.clientSecret,
      clientAuth: refreshClientAuth(entry, config),
      provider: config.provider,
      clientKey: config.clientKey,
      assertionAudience: config.assertionAudience,
    },
    deps,
    trace,
    false,
  );
  if (entry.dpopKey) await enableDpop(issuer, await dpopState(entry.dpopKey, entry.dpopNonces, deps));
  const { as, client, auth, http } = issuer;
  const tokens = await step("refresh the access token", () =>
    onceMoreForNonce(issuer, async () => {
      const extra = { ...(resource ? { resource } : {}), ...(scope ? { scope } : {}) };
      const response = await oauth.refreshTokenGrantRequest(as, client, auth, entry.refreshToken!, {
        ...http,
        ...(resource || scope ? { additionalParameters: extra } : {}),
      });
      return await processTokens(response, deps.now(), (r) => oauth.processRefreshTokenResponse(as, client, r));
    }));
  const claims = oauth.getValidatedIdTokenClaims(tokens);
  if (claims && entry.subject && claims.sub !== entry.subject) {
    // OpenID Connect Core §12.2: a refreshed ID token must name the same sub; oauth4webapi cannot know the old one.
    throw new LoginError("invalid_response", "Cannot refresh the access token: the new ID token names another user", {
      hint: 'the cached tokens were kept unused; run "oauth-login login" to sign in again',
    });
  }
  return toTokenSet(
    config,
    tokens,
    { now: deps.now(), metadata: entry.metadata, authMethod: issuer.authMethod, dpop: issuer.dpop },
    entry,
  );
}

/**
 * The entry as seen for another of its resources: that resource's cached access token, else one
 * from a refresh with `resource` (RFC 8707 §2.2), kept beside the entry's own under its lock.
 */
async function forResource(
  config: Config,
  deps: Deps,
  name: string,
  resource: string,
  /** A token for `resource` the API refused: get another even if it has not expired. */
  rejected?: string,
): Promise<TokenSet> {
  const lock = await lockEntry(name, deps);
  try {
    const current = await readEntry(config, deps, name);
    if (!current) throw loginRequired(config, "No cached token");
    // What `token` and `fetch` use (never saved): the entry with that resource's access token.
    const view = (token: { accessToken: string; tokenType: string; expiresAt?: number }, entry: TokenSet) => ({
      ...entry,
      ...token,
      resource,
    });
    const held = current.resourceTokens?.[resource];
    if (held && isFresh({ ...current, ...held }, deps.now(), config.minTtlMs) && held.accessToken !== rejected) {
      return view(held, current);
    }
    if (!holds(current, "refresh_token")) {
      throw loginRequired(config, `The cached token is not for "${sanitize(resource)}" and cannot be refreshed`);
    }
    const open = await openEntry(current, deps);
    const item = await refreshItem(config, deps, name, open);
    const next = await refreshTokenSet(open, config, deps, makeTrace(config, deps), resource);
    const token = { accessToken: next.accessToken, tokenType: next.tokenType, expiresAt: next.expiresAt };
    const saved: TokenSet = {
      ...open,
      refreshToken: next.refreshToken,
      dpopNonces: next.dpopNonces,
      resourceTokens: { ...current.resourceTokens, [resource]: token },
    };
    await saveEntry(config, deps, name, saved, { previous: current, item });
    return view(token, saved);
  } finally {
    lock.release();
  }
}

/** `kubectlInteractive`: kubectl's `spec.interactive` when it runs us (it overrides the usual rule). */
async function renew(
  config: Config,
  deps: Deps,
  name: string,
  entry: TokenSet | undefined,
  kubectlInteractive?: boolean,
  /** An access token the API refused: refresh even when it has not expired (unless another process did). */
  rejected?: string,
): Promise<TokenSet> {
  let why = rejected
    ? "The server refused the cached token and it cannot be refreshed"
    : entry
    ? "The cached token has expired and cannot be refreshed"
    : "No cached token";
  if (entry && !rejected && !renewable(entry) && !hasExpired(entry, deps.now())) {
    return stillValid(entry, "there is no refresh token", deps, 'run "oauth-login login" to sign in again');
  }
  if ((entry && holds(entry, "refresh_token")) || config.grant) {
    // Catch Ctrl-C from here on: a refresh cut short could lose a rotated refresh token.
    deps.catchInterrupt?.();
    const interrupt = deps.signal;
    let lock: { release(): void };
    try {
      lock = await lockEntry(name, deps);
    } catch (error) {
      // Another process has held the lock for a minute: a token that has not expired still works.
      const stuck = error instanceof LoginError && error.code === "failure";
      if (!stuck || !entry || rejected || hasExpired(entry, deps.now())) throw error;
      return stillValid(
        entry,
        "another oauth-login process has been refreshing it for a minute",
        deps,
        sanitize(error.hint),
      );
    }
    try {
      if (interrupt.aborted) throw new LoginError("interrupted", "Interrupted");
      // A grant without a person runs again; a person's login is refreshed.
      const renewed = config.grant
        ? await renewGrant(config, deps, name, rejected)
        : await refreshLocked(config, deps, name, rejected);
      if (typeof renewed === "string") why = renewed;
      else if (renewed) return renewed;
    } finally {
      lock.release();
    }
  }
  if (kubectlInteractive === false) {
    throw loginRequired(config, why, {
      named: entry?.metadata.issuer,
      hint: `kubectl gives this plugin no terminal: run "oauth-login login${
        loginFlags(config, true)
      }" in a terminal, then run kubectl again`,
    });
  }
  if (!config.interactive && !deps.canPrompt && kubectlInteractive !== true) {
    throw loginRequired(config, why, { named: entry?.metadata.issuer });
  }
  say(deps, `${why} for ${displayIssuer(config.issuer)}: signing in`);
  return await loginAndSave(config, deps, name);
}

/**
 * `renew`'s refresh of a person's entry, under its lock: the entry again if another process refreshed it
 * meanwhile; the refreshed entry, saved (its refresh token sealed, `saveEntry`); the cached one with a
 * warning when a refresh ahead of time fails (the token still works); why, when the session has ended
 * (`endSession`: the server refused the refresh token, or the sealed one is gone); undefined when there
 * is nothing to refresh with (another process logged out).
 */
async function refreshLocked(
  config: Config,
  deps: Deps,
  name: string,
  rejected?: string,
): Promise<TokenSet | string | undefined> {
  const interrupt = deps.signal;
  const current = await readEntry(config, deps, name);
  if (current && isFresh(current, deps.now(), config.minTtlMs) && current.accessToken !== rejected) return current;
  if (!current || !holds(current, "refresh_token")) return undefined;
  try {
    // The refresh token (sealed: one keychain read), and where the refreshed one goes, before any request.
    const open = await openEntry(current, deps);
    const item = await refreshItem(config, deps, name, open);
    const next = await refreshTokenSet(open, config, deps, makeTrace(config, deps));
    await saveEntry(config, deps, name, next, { previous: current, item });
    if (interrupt.aborted) throw new LoginError("interrupted", "Interrupted");
    return next;
  } catch (error) {
    // invalid_client for a client this tool registered: the server no longer knows it (signInAtResource registers again).
    const ended = error instanceof ErrorResponse &&
      (error.code === "invalid_grant" ||
        (error.code === "invalid_client" && !!config.protectedResource?.registration));
    if (!ended && !(error instanceof SecretsGone)) {
      // A refresh ahead of time that fails (server error, network, timeout, keychain): the token still works.
      if (hasExpired(current, deps.now()) || interrupt.aborted) throw error;
      const why = (error as Error).message.replace(/^Cannot refresh the access token: /, "");
      return stillValid(current, why, deps, "it is tried again at the next use");
    }
    return await endSession(name, current, error as ErrorResponse | SecretsGone, deps);
  }
}

/**
 * A session that cannot go on (the server answered `invalid_grant`, or the sealed refresh token cannot
 * be had any more): removes the entry and its keychain item, says so, and returns why, for a new sign-in.
 */
async function endSession(
  name: string,
  entry: TokenSet,
  error: ErrorResponse | SecretsGone,
  deps: Deps,
): Promise<string> {
  await removeEntry(name, entry, deps);
  if (error instanceof SecretsGone) {
    say(
      deps,
      `warning: The cached refresh token cannot be read any more (${error.reason}); the cached tokens were removed`,
    );
    return "The cached refresh token is gone from the keychain";
  }
  say(deps, `warning: The session has ended at the server (${error.message}); the cached tokens were removed`);
  return "The session has ended";
}

/** A token due for renewal that cannot be renewed now but has not expired: says why on stderr, and is used. */
function stillValid(entry: TokenSet, why: string, deps: Deps, next: string): TokenSet {
  const left = entry.expiresAt === undefined ? undefined : Math.round((entry.expiresAt - deps.now()) / 1000);
  const until = left === undefined
    ? ""
    : `, which expires ${left < 120 ? `in ${plural(left, "second")}` : relativeTime(entry.expiresAt!, deps.now())}`;
  say(deps, `warning: Cannot renew the access token (${sanitize(why)}); using the cached one${until}; ${next}`);
  return entry;
}

/**
 * What could not be revoked, and whose fault it was: the server answered (`server`), the request did
 * not reach it (`network`), nothing was sent because something is missing here (`local`), or the
 * keychain that holds the refresh token did not give it (`keychain`).
 */
interface RevocationProblem {
  text: string;
  kind: "server" | "network" | "local" | "keychain";
}

/**
 * Whether the configured client credentials (secret, key) were given for this entry: its issuer and
 * client are the configured ones. Only then are they sent with its tokens (`logout --all` meets the
 * entries of every issuer). Pure.
 */
function credentialsFor(entry: TokenSet, config: Pick<Config, "issuer" | "clientId">): boolean {
  return sameIssuer(entry.issuer, config.issuer) && entry.clientId === config.clientId;
}

/** Revokes the entry's refresh and access tokens (RFC 7009); returns what could not be revoked. */
async function revokeTokenSet(
  entry: TokenSet,
  config: Config,
  deps: Deps,
  trace?: Trace,
): Promise<RevocationProblem[] | "no_endpoint"> {
  const as = entry.metadata as unknown as Oauth.AuthorizationServer;
  // The client's secret and key, and a preset's own revocation API, only for the issuer and client they were given for.
  const ours = credentialsFor(entry, config);
  const preset = config.provider ? PRESETS[config.provider] : undefined;
  const own = ours && presetServes(preset, String(as.token_endpoint ?? entry.issuer), deps.presetBase);
  const deletion = own ? preset?.tokenDeletionEndpoint : undefined;
  if (!as.revocation_endpoint && deletion) return await deleteAppToken(entry, config, deletion, deps, trace);
  const bearer = own ? preset?.bearerRevocationEndpoint : undefined;
  if (!as.revocation_endpoint && bearer) return await revokeWithBearer(entry, bearer, deps, trace);
  if (!as.revocation_endpoint) {
    if (!config.all) {
      say(deps, "note: The server has no revocation endpoint, so the tokens stay valid there until they expire");
    }
    return "no_endpoint";
  }
  const oauth = await lib();
  const secret = ours ? config.clientSecret : undefined;
  const clientKey = ours ? config.clientKey : undefined;
  if (entry.authMethod === "private_key_jwt" && !clientKey) {
    return [{
      text: `the client key for "${sanitize(entry.clientId)}" is not configured, so the tokens cannot be revoked`,
      kind: "local",
    }];
  }
  if (entry.authMethod !== "none" && entry.authMethod !== "private_key_jwt" && !secret) {
    return [{
      text: `the client secret for "${sanitize(entry.clientId)}" is not configured, so the tokens cannot be revoked`,
      kind: "local",
    }];
  }
  const issuer = await issuerFor(
    as,
    {
      clientId: entry.clientId,
      clientSecret: secret,
      clientAuth: entry.authMethod,
      clientKey,
      assertionAudience: config.assertionAudience,
    },
    deps,
    trace,
  );
  if (entry.dpopKey) await enableDpop(issuer, await dpopState(entry.dpopKey, entry.dpopNonces, deps));
  const problems: RevocationProblem[] = [];
  const tokens: [string | undefined, string][] = [[entry.refreshToken, "refresh_token"], [
    entry.accessToken,
    "access_token",
  ]];
  for (const other of Object.values(entry.resourceTokens ?? {})) tokens.push([other.accessToken, "access_token"]);
  for (const [token, hint] of tokens) {
    if (!token) continue;
    try {
      await step(`revoke the ${hint.replace("_", " ")}`, () =>
        onceMoreForNonce(issuer, async () => {
          const url = assertEndpoint(as.revocation_endpoint, "revocation_endpoint", as.issuer);
          const auth = issuer.authTo(as.revocation_endpoint);
          const response = await oauth.revocationRequest(as, issuer.client, auth, token, {
            ...issuer.http,
            additionalParameters: { token_type_hint: hint },
            ...(issuer.dpop ? { headers: { dpop: await postProof(issuer.dpop, url) } } : {}),
          });
          await oauth.processRevocationResponse(response);
        }));
    } catch (error) {
      const network = error instanceof LoginError && (error.code === "network" || error.code === "interrupted");
      problems.push({
        text: error instanceof Error ? error.message : String(error),
        kind: network ? "network" : "server",
      });
    }
  }
  return problems;
}

/**
 * Revokes through a provider's own API that takes the access token as a Bearer token (Dropbox's
 * `POST /2/auth/token/revoke`, which also ends the refresh token it came from). 200 when done; 401
 * when the token was no longer valid (nothing left to revoke with it). Returns what could not be revoked.
 */
async function revokeWithBearer(
  entry: TokenSet,
  template: string,
  deps: Deps,
  trace?: Trace,
): Promise<RevocationProblem[]> {
  const url = rebase(template, deps.presetBase);
  try {
    const response = await issuerFetch(deps, trace)(url, {
      method: "POST",
      headers: { authorization: `Bearer ${entry.accessToken}` },
    });
    await response.body?.cancel();
    if (response.status === 200 || response.status === 401) return [];
    return [{ text: `Cannot revoke the tokens: the server answered HTTP ${response.status}`, kind: "server" }];
  } catch (error) {
    const text = error instanceof Error ? error.message : String(error);
    return [{ text, kind: error instanceof LoginError && error.code === "network" ? "network" : "server" }];
  }
}

/**
 * GitHub's revocation, which is not RFC 7009: `DELETE /applications/{client_id}/token` with the client
 * id and secret as Basic credentials and the access token in a JSON body; 204 when done, 404 when the
 * token was no longer valid. Returns what could not be revoked.
 */
async function deleteAppToken(
  entry: TokenSet,
  config: Config,
  template: string,
  deps: Deps,
  trace?: Trace,
): Promise<RevocationProblem[]> {
  if (!config.clientSecret) {
    const text = `the client secret for "${
      sanitize(entry.clientId)
    }" is not configured, so the token cannot be revoked`;
    return [{ text, kind: "local" }];
  }
  const url = rebase(template.replace("{client_id}", encodeURIComponent(entry.clientId)), deps.presetBase);
  try {
    const response = await issuerFetch(deps, trace)(url, {
      method: "DELETE",
      headers: {
        accept: "application/vnd.github+json",
        "content-type": "application/json",
        authorization: `Basic ${btoa(`${entry.clientId}:${config.clientSecret}`)}`,
      },
      // Bytes, not a string: the trace describes string bodies, and this one holds the token.
      body: new TextEncoder().encode(JSON.stringify({ access_token: entry.accessToken })),
    });
    await response.body?.cancel();
    if (response.status === 204 || response.status === 404) return [];
    return [{ text: `Cannot revoke the access token: the server answered HTTP ${response.status}`, kind: "server" }];
  } catch (error) {
    const text = error instanceof Error ? error.message : String(error);
    return [{ text, kind: error instanceof LoginError && error.code === "network" ? "network" : "server" }];
  }
}

// ── 22 Resources that say where to sign in: RFC 9728 metadata, the server it names, the sign-in ────────────────────

/**
 * The API to discover where to sign in from (RFC 9728), or undefined: `fetch`'s URL, `doctor`'s, or the
 * one `--resource` of `login`, `token`, `whoami` or `logout`, when it is an http(s) URL and the settings
 * name no server (no issuer, preset or hand-given endpoint), or an issuer but no client id (then the
 * issuer picks among the servers the API names). Never for a grant without a person (`grant`): its
 * credentials and subject tokens go only to a server of the person's own settings. Pure.
 */
const resourceMode = (function resourceMode(
  cli: Cli,
  flags: FlagValues,
  settings: {
    issuerText?: string;
    clientId?: string;
    provider?: string;
    endpoints: Partial<Record<EndpointKey, string>>;
    grant?: string;
  },
): string | undefined {
  const named = cli.command === "fetch"
    ? cli.target ?? flags.url
    : cli.command === "doctor"
    ? cli.target
    : ["login", "token", "whoami", "logout"].includes(cli.command) && flags.resource?.length === 1
    ? flags.resource[0]
    : undefined;
  const url = named === undefined ? undefined : parseUrl(named);
  if (!url || (url.protocol !== "https:" && url.protocol !== "http:")) return undefined;
  if (settings.provider || settings.grant || Object.keys(settings.endpoints).length > 0) return undefined;
  return !settings.issuerText || !settings.clientId ? url.href : undefined;
}).bind(undefined);

/**
 * When an API's metadata chooses the server (`resourceMode`), the person's own client settings that
 * this command line did not give (a client id, secret, key or client authentication, a scope) are set
 * aside: they were given for a server of their own, and a secret never goes to a server only an API
 * named (SECURITY.md 13). Returns the settings kept (those a flag gave), `pick` restricted likewise for
 * the credential settings picked later, and `aside`: what was set aside, and where it was set. Pure.
 */
function ownClientSettings(
  picked: { clientId?: string; clientSecret?: string; scope?: string; pick: ConfigPick },
  sources: Record<string, ValueSource>,
  where: { profile?: Profile; envFile?: string },
): { clientId?: string; clientSecret?: string; scope?: string; pick: ConfigPick; aside: string[] } {
  const aside: string[] = [];
  const keep = (key: string, value: string | undefined) => {
    const source = sources[key];
    if (value === undefined || source === undefined || source === "flag") return value;
    const variable = (ENV_VARS as Record<string, string>)[key];
    aside.push(
      source === "profile"
        ? `${profileKey(flagOf(key))} in the profile "${where.profile?.name}"`
        : `${variable} from ${source === ".env" ? where.envFile ?? ".env" : "the environment"}`,
    );
    delete sources[key];
    return undefined;
  };
  const pick: ConfigPick = (key, flag, variable) => {
    const value = picked.pick(key, flag, variable);
    return (CREDENTIAL_KEYS as readonly string[]).includes(key) ? keep(key, value) : value;
  };
  return {
    clientId: keep("clientId", picked.clientId),
    clientSecret: keep("clientSecret", picked.clientSecret),
    scope: keep("scope", picked.scope),
    pick,
    aside,
  };
}

/** What the API and its metadata said, and the configuration to sign in with (`discoverResource`). */
interface ResourcePlan {
  /** The configuration to sign in with: the server, the client, the scope and the `resource`. */
  config: Config;
  /** The authorization server's metadata (RFC 8414), discovered and checked. */
  as: Oauth.AuthorizationServer;
  /** The protected resource metadata (RFC 9728 §2). */
  metadata: Oauth.ResourceServer;
}

/** One step of `discoverResource`, for `doctor` to show: what was found (ok) or what may go wrong (warn). */
type ResourceReport = (status: "ok" | "warn", message: string) => void;

/** A resource identifier as a cache key: its origin and path without a trailing slash (`https://api.example`). Pure. */
function resourceKey(resource: string): string | undefined {
  const url = parseUrl(resource);
  return url ? `${url.origin}${url.pathname.replace(/\/+$/, "")}` : undefined;
}

/**
 * The resource keys an entry for `url` may be kept under, deepest first: its own path, then each path
 * above it on the same origin (`https://h/a/b`, `https://h/a`, `https://h`). Pure.
 */
function resourceKeysFor(url: URL): string[] {
  const segments = url.pathname.split("/").filter(Boolean);
  return segments.map((_, i) => `${url.origin}/${segments.slice(0, segments.length - i).join("/")}`)
    .concat(url.origin);
}

/**
 * Why an API's metadata does not describe `url`, or undefined when it does: its `resource` must be the
 * URL (without query) or a path above it, segment by segment, on the same origin, with no credentials
 * or fragment. RFC 9728 §3.3 asks for the very URL; MCP clients accept a path above it, and so do we:
 * the token still goes only to that origin (`tokenRefusal`). Pure.
 */
function resourceMismatch(url: URL, resource: unknown): string | undefined {
  const claimed = typeof resource === "string" ? parseUrl(resource) : undefined;
  const scheme = claimed?.protocol === "https:" || claimed?.protocol === "http:";
  if (!claimed || !scheme || claimed.hash || claimed.username || claimed.password) {
    return `names no valid resource (${sanitize(JSON.stringify(resource ?? null), 120)})`;
  }
  const within = claimed.origin === url.origin &&
    `${url.pathname.replace(/\/+$/, "")}/`.startsWith(`${claimed.pathname.replace(/\/+$/, "")}/`);
  return within ? undefined : `claims the resource "${sanitize(resource, 120)}"`;
}

/** The name of the entry kept for an API: its resource key's host and hash, and the profile's name when one is in use. Pure. */
function resourceEntryName(key: string, profile?: string): string {
  return fileName(new URL(key), ["protected resource", key, ...(profile !== undefined ? [{ profile }] : [])]);
}

/**
 * The authorization server to sign in at, from the metadata's `authorization_servers` (RFC 9728 §2): the
 * first, or the one the settings name (`selector`, with where it was set), which must be among them. An
 * http server only for an API on this machine. Throws a LoginError. Pure.
 */
function chooseServer(
  metadata: Oauth.ResourceServer,
  api: URL,
  selector?: { issuer: string; from: string },
): string {
  const servers = Array.isArray(metadata.authorization_servers)
    ? metadata.authorization_servers.filter((s): s is string => typeof s === "string")
    : [];
  if (servers.length === 0) {
    throw new LoginError("invalid_response", `The metadata of the API at ${api.host} names no authorization server`, {
      hint: "its authorization_servers must list the issuer that hands out its tokens; report it to the API's operator",
    });
  }
  const named = servers.find((server) => selector && sameIssuer(resourceIssuer(server) ?? server, selector.issuer));
  if (selector && !named) {
    throw new LoginError(
      "config",
      `The API at ${api.host} takes tokens from ${servers.map((s) => `"${sanitize(s)}"`).join(", ")}, not from "${
        displayIssuer(selector.issuer)
      }" (${selector.from})`,
      { hint: `drop ${selector.from} to sign in where the API says` },
    );
  }
  const chosen = named ?? servers[0];
  const issuer = resourceIssuer(chosen);
  const url = issuer === undefined ? undefined : new URL(issuer);
  if (!url || (url.protocol === "http:" && !isLoopbackTokenHost(api.hostname))) {
    throw new LoginError(
      "invalid_response",
      `The metadata of the API at ${api.host} names an authorization server that is not an https URL: "${
        sanitize(chosen)
      }"`,
      { hint: "an API names a plain-http server only on this machine; report it to the API's operator" },
    );
  }
  return issuer!;
}

/** An issuer named by an API's metadata, as `parseIssuer` writes it; undefined when it is not one. Pure. */
function resourceIssuer(text: string): string | undefined {
  try {
    const { issuer, metadataUrl } = parseIssuer(text);
    return metadataUrl ? undefined : issuer;
  } catch {
    return undefined;
  }
}

/**
 * The scope to ask for an API (the MCP authorization spec's order): `--scope`, else the challenge's
 * `scope` (RFC 6750 §3), else the metadata's `scopes_supported`, else none; with `openid`, `profile` and
 * `offline_access` where the server lists them (who signed in, and a refresh token), as a login asks. Pure.
 */
function resourceScope(
  config: Pick<Config, "scope">,
  challenge: string | undefined,
  metadata: Oauth.ResourceServer,
  as: Oauth.AuthorizationServer,
): string {
  if (config.scope !== undefined) return config.scope;
  const listed = Array.isArray(metadata.scopes_supported)
    ? metadata.scopes_supported.filter((s): s is string => typeof s === "string").join(" ")
    : "";
  const offered = Array.isArray(as.scopes_supported) ? as.scopes_supported : [];
  const extra = ["openid", "profile", "offline_access"].filter((scope) => offered.includes(scope));
  return unionScope(extra.join(" "), challenge ?? listed);
}

/** The scope tokens of both, once each, in order (RFC 6749 §3.3). Pure. */
function unionScope(a: string, b: string): string {
  return [...new Set([...scopeList(a), ...scopeList(b)])].join(" ");
}

/**
 * The `WWW-Authenticate` challenges of an answer (RFC 9110 §11.6.1), parsed by oauth4webapi: its
 * parser is not exported, so the answer is handed to `protectedResourceRequest` as if just received
 * (nothing is sent) and read from the `WWWAuthenticateChallengeError` it throws. [] when there are none.
 */
async function challengesOf(answer: Pick<Answer, "status" | "headers">): Promise<Oauth.WWWAuthenticateChallenge[]> {
  const header = answer.headers.get("www-authenticate");
  if (!header) return [];
  const oauth = await lib();
  const replay = () =>
    Promise.resolve(new Response(null, { status: answer.status, headers: { "www-authenticate": header } }));
  try {
    await oauth.protectedResourceRequest("-", "GET", new URL("http://127.0.0.1/"), new Headers(), null, {
      [oauth.customFetch]: replay as unknown as ResourceFetch,
      [oauth.allowInsecureRequests]: true,
    });
  } catch (error) {
    if (error instanceof oauth.WWWAuthenticateChallengeError) return error.cause;
  }
  return [];
}

/** Whether an API's answer to a request without a token asks for one: 401, or 403 with a Bearer (or DPoP) challenge. */
async function asksForToken(answer: Answer): Promise<boolean> {
  if (answer.status === 401) return true;
  return answer.status === 403 &&
    (await challengesOf(answer)).some((c) => c.scheme === "bearer" || c.scheme === "dpop");
}

/** The request `login`, `token` and `doctor` make of an API to read its challenge: a GET, the answer's start only. */
async function probeResource(api: URL, deps: Deps, trace?: Trace): Promise<Answer> {
  return await send(deps, api, { headers: { accept: "application/json, */*;q=0.5" } }, {
    trace,
    traceFields: false,
    maxBytes: PREFLIGHT_BODY_BYTES,
    truncate: true,
    urlName: "the URL",
  });
}

/**
 * Steps 1 and 2 of RFC 9728's flow: the metadata of the API at `api`, from the `resource_metadata` its
 * answer's challenge names (RFC 9728 §5.1), else at `/.well-known/oauth-protected-resource` with the
 * API's path inserted, then at its root (§3.1; a 4xx there means: try the next). Fetched through the one
 * sender (no redirect followed) and checked (`readResourceMetadata`). Throws a LoginError when none can be used.
 */
async function findResourceMetadata(
  api: URL,
  answer: Answer,
  deps: Deps,
  { trace, report }: { trace?: Trace; report?: ResourceReport },
): Promise<{ metadata: Oauth.ResourceServer; challenge?: Oauth.WWWAuthenticateChallengeParameters }> {
  const oauth = await lib();
  const challenge = (await challengesOf(answer)).find((c) => c.scheme === "bearer" || c.scheme === "dpop")?.parameters;
  const named = challenge?.resource_metadata;
  report?.("ok", `${api.origin}${api.pathname} answered HTTP ${answer.status}${named ? `, naming its metadata` : ""}`);
  const http = {
    [oauth.customFetch]: metadataFetch(deps, trace),
    [oauth.allowInsecureRequests]: api.protocol === "http:",
  };
  const identifiers = [new URL(`${api.origin}${api.pathname}`)];
  if (api.pathname !== "/") identifiers.push(new URL(api.origin));
  const attempts = named !== undefined
    ? [{
      url: parseUrl(named),
      request: () => metadataFetch(deps, trace)(named, { headers: { accept: "application/json" } }),
    }]
    : identifiers.map((id) => ({
      url: new URL(`${api.origin}/.well-known/oauth-protected-resource${id.pathname === "/" ? "" : id.pathname}`),
      request: () => oauth.resourceDiscoveryRequest(id, http),
    }));
  const tried: string[] = [];
  for (const { url, request } of attempts) {
    const local = url?.protocol === "http:" && isLoopbackTokenHost(url.hostname) && isLoopbackTokenHost(api.hostname);
    if (!url || (url.protocol !== "https:" && !local)) {
      throw new LoginError(
        "invalid_response",
        `The API at ${api.host} names metadata that is not an https URL: "${sanitize(named, 200)}"`,
        { hint: "an API names plain-http metadata only on this machine; report it to the API's operator" },
      );
    }
    tried.push(url.href);
    const response = await request();
    if (named === undefined && response.status >= 400 && response.status < 500) {
      await response.body?.cancel();
      report?.("ok", `no metadata at ${url.href} (HTTP ${response.status})`);
      continue;
    }
    const metadata = await readResourceMetadata(api, url, response);
    report?.("ok", `${url.href} names the resource ${metadata.resource}`);
    return { metadata, challenge };
  }
  throw new LoginError(
    "config",
    `The API at ${api.host} does not say where to sign in: its answer (HTTP ${answer.status}) names no metadata, and there is none at ${
      tried.join(" or ")
    }`,
    { hint: "pass --issuer and --client-id of the server that hands out its tokens" },
  );
}

/** The fetch that reads an API's metadata: the one sender, nothing followed; oauth4webapi reads what it answers. */
function metadataFetch(deps: Deps, trace?: Trace): typeof fetch {
  return async (input, init) => {
    const url = new URL(input instanceof Request ? input.url : String(input));
    return responseOf(await send(deps, url, init ?? {}, { trace, urlName: "the URL" }));
  };
}

/**
 * Reads protected resource metadata with oauth4webapi. Its check wants the `resource` identical to the
 * URL asked (RFC 9728 §3.3); we accept a path above it on the same origin (`resourceMismatch`), so that
 * rule is checked first on the document's own `resource`, which is then what oauth4webapi compares with
 * (its other checks, HTTP 200 and a JSON object with a string `resource`, stand as they are).
 */
async function readResourceMetadata(api: URL, from: URL, response: Response): Promise<Oauth.ResourceServer> {
  const oauth = await lib();
  if (response.status !== 200) {
    await response.body?.cancel();
    throw new LoginError(
      "invalid_response",
      `Cannot fetch the API's metadata: the server answered HTTP ${response.status}${
        response.status >= 300 && response.status < 400 ? ", a redirect, which is not followed" : ""
      } (GET ${sanitize(from.href, 200)})`,
      { hint: response.status >= 500 ? "try again later" : "report it to the API's operator" },
    );
  }
  const claimed = parseJsonObject(await response.clone().text())?.resource;
  const mismatch = claimed !== undefined ? resourceMismatch(api, claimed) : undefined;
  if (mismatch) {
    await response.body?.cancel();
    throw new LoginError(
      "invalid_response",
      `The metadata of the API at ${api.host} (${sanitize(from.href, 200)}) ${mismatch}, which is not ${
        sanitize(`${api.origin}${api.pathname}`, 200)
      } or a path above it`,
      { hint: "its metadata must name this URL or a path above it on the same host (RFC 9728 §3.3)" },
    );
  }
  const expected = typeof claimed === "string" ? new URL(claimed) : api;
  return await step("read the API's metadata", () => oauth.processResourceDiscoveryResponse(expected, response));
}

/**
 * Steps 1 to 4 of signing in for an API (RFC 9728; the MCP authorization spec): its challenge (the
 * answer to a request without a token: fetch's own, else a GET), its metadata, its authorization server
 * (discovered: RFC 8414, then OpenID; the issuer must match), and a client (`obtainClient`). The plan
 * signs in for the metadata's `resource` (RFC 8707) with the scope `resourceScope` chooses. `report`
 * hears each step (`doctor`). Throws a LoginError.
 */
async function discoverResource(
  config: Config,
  deps: Deps,
  options: { answer?: Answer; report?: ResourceReport } = {},
): Promise<ResourcePlan> {
  const trace = makeTrace(config, deps);
  const api = new URL(config.protectedResource!.url);
  const refusal = tokenRefusal(api); // its metadata over plain http could name any server
  if (refusal) throw refusal;
  const answer = options.answer ?? await probeResource(api, deps, trace);
  const { metadata, challenge } = await findResourceMetadata(api, answer, deps, { trace, report: options.report });
  const selector = config.issuer ? { issuer: config.issuer, from: settingSource(config, "issuer") } : undefined;
  const issuer = chooseServer(metadata, api, selector);
  options.report?.("ok", `the API takes tokens from ${issuer}${selector ? ` (${selector.from} picks it)` : ""}`);
  const server: Config = { ...config, issuer, metadataUrl: undefined, provider: undefined };
  const as = (await discoverIssuer(server, deps, trace).catch((error) => {
    throw error instanceof LoginError && error.message.startsWith("Issuer mismatch")
      ? new LoginError("invalid_response", error.message, {
        hint: `the API's metadata names "${issuer}"; its operator must name the server's exact issuer`,
      })
      : error;
  })).as;
  const scope = resourceScope(config, challenge?.scope, metadata, as);
  options.report?.("ok", `scope to ask for: ${scope || "none"}${config.scope !== undefined ? " (--scope)" : ""}`);
  const client = await obtainClient(server, as, deps, { trace, report: options.report });
  const resource = metadata.resource;
  const plan: Config = {
    ...server,
    ...client.settings,
    scope,
    resources: [resource],
    params: [...config.params.filter(([key]) => key !== "resource"), ["resource", resource]],
    protectedResource: {
      ...config.protectedResource!,
      resource,
      registration: client.registration,
      client: client.origin,
    },
  };
  return { config: plan, as, metadata };
}

/** Where a setting came from, as the person wrote it: `--issuer`, `OAUTH_ISSUER in the environment`, ... */
function settingSource(config: Pick<Config, "sources" | "profile">, key: string): string {
  const source = config.sources[key];
  const variable = (ENV_VARS as Record<string, string>)[key];
  if (source === "environment") return `${variable} in the environment`;
  if (source === ".env") return `${variable} in .env`;
  if (source === "profile") return `${profileKey(flagOf(key))} in the profile "${config.profile}"`;
  return `--${flagOf(key)}`;
}

/**
 * The entry kept for `config`'s API, without a request: under the resource key of the URL or of a path
 * above it, deepest first (`resourceKeysFor`), whose entry names that resource. With it, the
 * configuration to renew and revoke it with (`resourceConfig`). `name` is "" when there is none.
 */
async function resourceEntry(config: Config, deps: Deps): Promise<FoundEntry> {
  for (const key of resourceKeysFor(new URL(config.protectedResource!.url))) {
    const name = resourceEntryName(key, config.profile);
    const text = await deps.storage.read(`${name}.json`);
    const entry = text === undefined ? undefined : parseTokenSet(text);
    const resource = entry?.protectedResource?.resource;
    if (
      entry && resource !== undefined && resourceKey(resource) === key &&
      (entry.profile ?? "") === (config.profile ?? "") && !entry.grant
    ) {
      return { name, entry, config: await resourceConfig(config, entry, deps) };
    }
    if (text !== undefined) {
      say(
        deps,
        `warning: The cached token at "${deps.storage.dir}/${name}.json" is unreadable or not for this API; it is ignored`,
      );
    }
  }
  return { name: "" };
}

/**
 * The configuration an API's entry is renewed and revoked with: its server, its client (with the
 * registered client's secret, read from the registration the entry names, when it has one), its scope
 * and its resource. Only the tool's own registration file is read, and only for the entry's server.
 */
async function resourceConfig(config: Config, entry: TokenSet, deps: Deps): Promise<Config> {
  const api = entry.protectedResource!;
  let clientSecret: string | undefined;
  if (api.registration && entry.authMethod !== "none" && CACHE_FILE.test(`${api.registration}.json`)) {
    const text = await deps.storage.read(`${api.registration}.json`);
    const found = text === undefined ? undefined : parseJsonObject(text);
    if (found?.issuer === entry.issuer && found.clientId === entry.clientId) {
      const registration = found.sealed === undefined || isSealed(found.sealed)
        ? found as unknown as Registration
        : undefined;
      clientSecret = (await openRegistration(registration, deps))?.clientSecret;
      if (typeof clientSecret !== "string") clientSecret = undefined;
    }
  }
  return {
    ...config,
    issuer: entry.issuer,
    clientId: entry.clientId,
    clientSecret: clientSecret ?? (config.sources.clientId === "flag" ? config.clientSecret : undefined),
    clientAuth: entry.authMethod,
    scope: entry.requestedScope,
    resources: [api.resource],
    params: [...config.params.filter(([key]) => key !== "resource"), ["resource", api.resource]],
    protectedResource: {
      ...config.protectedResource!,
      resource: api.resource,
      registration: api.registration,
      client: api.registration ? "remembered" : "given",
    },
  };
}

/**
 * Signs in for the API `config` names (steps 1 to 5) and keeps the entry under its resource: `answer`
 * is its answer to the request without a token, when the command made one (`fetch`). Says where it
 * signs in and why, unless `--quiet`.
 */
async function resourceLogin(
  config: Config,
  deps: Deps,
  answer?: Answer,
): Promise<{ name: string; entry: TokenSet; config: Config }> {
  const api = config.protectedResource!;
  if (api.setAside.length > 0) {
    say(
      deps,
      `warning: Not using ${
        listWords(api.setAside)
      }: the API's metadata names the server to sign in at, and these were set for your own; pass --client-id (and --client-secret, --scope) to use them for this call`,
    );
  }
  const plan = await discoverResource(config, deps, { answer });
  const server = displayIssuer(plan.as.issuer);
  if (!config.quiet) {
    say(deps, `The API at ${new URL(api.url).host} takes tokens from ${server}: signing in there`);
    if (plan.config.protectedResource?.client === "registered") {
      say(
        deps,
        `note: Registered this tool as a client at ${
          new URL(plan.as.issuer).host
        } (RFC 7591); it is kept for later sign-ins`,
      );
    }
  }
  const name = resourceEntryName(resourceKey(plan.metadata.resource)!, config.profile);
  const signed = await loginAndSaveWith(plan.config, deps, name, plan.as);
  return { name, ...signed };
}

/** "a", "a and b", "a, b and c". Pure. */
function listWords(items: string[]): string {
  return items.length < 2 ? items.join("") : `${items.slice(0, -1).join(", ")} and ${items.at(-1)}`;
}

/**
 * A sign-in for an API with the client its plan has; when the server refuses a client this tool
 * registered before (it no longer knows it), the client is registered again, once, and the sign-in
 * made with the new one. Returns the configuration used.
 */
async function signInAtResource(
  config: Config,
  deps: Deps,
  metadata?: Oauth.AuthorizationServer,
): Promise<{ config: Config; result: SignInResult }> {
  try {
    return { config, result: await signIn(config, deps, metadata) };
  } catch (error) {
    const api = config.protectedResource!;
    if (!(error instanceof RejectedRequest) || api.client !== "remembered" || !api.registration) throw error;
    const trace = makeTrace(config, deps);
    const as = metadata ?? (await discoverIssuer(config, deps, trace)).as;
    say(
      deps,
      `note: ${new URL(as.issuer).host} no longer knows the client this tool registered there; registering again`,
    );
    const client = await obtainClient({ ...config, clientId: "" }, as, deps, { trace, again: true });
    const next: Config = {
      ...config,
      ...client.settings,
      protectedResource: { ...api, registration: client.registration, client: client.origin },
    };
    return { config: next, result: await signIn(next, deps, as) };
  }
}

/**
 * `token`'s and `fetch`'s first sign-in for an API: exit 4 unless a person can answer (a terminal, or
 * `--interactive`; kubectl's `spec.interactive` overrides both, as for any sign-in). Undefined: go ahead.
 */
function resourceLoginRequired(config: Config, deps: Deps, kubectlInteractive?: boolean): LoginError | undefined {
  if (kubectlInteractive ?? (config.interactive || deps.canPrompt)) return undefined;
  return notSignedInForApi(config);
}

/** "Not signed in for the API URL", with the command that signs in for it. */
function notSignedInForApi(config: Config): LoginError {
  const url = config.protectedResource!.url;
  return new LoginError("login_required", `Not signed in for the API ${sanitize(url)}`, {
    hint: `run "oauth-login login --resource ${shellWord(sanitize(url))}"${
      config.command === "token" || config.command === "fetch"
        ? " (or pass --interactive to let this command sign you in)"
        : ""
    }`,
  });
}

// ── 23 A client for a server an API named: given, registered before, or registered now (RFC 7591) ──────────────────

/** The name this tool registers itself under (RFC 7591 `client_name`). */
const CLIENT_NAME = "oauth-login (a command-line tool)";

/** The loopback redirect URIs this tool registers: no port, so that any port is accepted (RFC 8252 §7.3). */
const REGISTERED_REDIRECTS = ["http://127.0.0.1/callback", "http://[::1]/callback", "http://localhost/callback"];

/** The device authorization grant's type (RFC 8628 §3.4), registered where the server offers the device flow. */
const DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code";

/** A registration whose client secret expires within this long (ms) is registered again rather than used. */
const SECRET_EXPIRY_MARGIN_MS = 60_000;

/** How a sign-in for an API got its client (`Config.protectedResource.client`). */
type ClientOrigin = "given" | "remembered" | "registered";

/** The redirect URIs to register: the one configured (`--redirect-uri`, `--port`), else the loopback ones without a port. */
function registrationRedirects(config: Pick<Config, "redirectUri">): string[] {
  return config.redirectUri ? [config.redirectUri] : REGISTERED_REDIRECTS;
}

/** A client this tool registered at a server (RFC 7591 §3.2.1), kept owner-only in the cache folder. */
interface Registration {
  version: 1;
  /** The server's issuer, and the redirect URIs registered: with them, what the file's name is made of. */
  issuer: string;
  redirectUris: string[];
  clientId: string;
  /**
   * The client secret (a secret), when the server issued one and no keychain keeps it: otherwise
   * sealed (`sealed`, kind `client_secret`) as an entry's refresh token is (`--token-storage`).
   */
  clientSecret?: string;
  /** The client secret, sealed under the key of a keychain item (see `TokenSet.sealed`). */
  sealed?: Sealed;
  /** When the secret expires, in seconds since the epoch; 0 or absent: never (RFC 7591 §3.2.1). */
  clientSecretExpiresAt?: number;
  authMethod: ClientAuthMethod;
  /** When it was registered, in ms since the epoch. */
  registeredAt: number;
}

/**
 * The file a registration is kept in (`<host>-<16 hex>.client.json`), per server and redirect URIs:
 * never an entry's name (`ENTRY_NAME`), so `Storage.list` never lists it as a login. Pure.
 */
function registrationName(issuer: string, redirectUris: string[]): string {
  return `${fileName(new URL(issuer), ["client registration", issuer, [...redirectUris].sort()])}.client`;
}

/**
 * A registration read from its file, when it is one this tool wrote for this server and these redirect
 * URIs and its secret (if any) does not expire within `SECRET_EXPIRY_MARGIN_MS` of `now`. Pure.
 */
function usableRegistration(
  text: string | undefined,
  issuer: string,
  redirectUris: string[],
  now: number,
): Registration | undefined {
  const value = text === undefined ? undefined : parseJsonObject(text);
  if (!value || value.version !== 1 || value.issuer !== issuer || typeof value.clientId !== "string") return undefined;
  if (JSON.stringify(value.redirectUris) !== JSON.stringify(redirectUris)) return undefined;
  if (!(CLIENT_AUTH_METHODS as readonly unknown[]).includes(value.authMethod)) return undefined;
  if (value.clientSecret !== undefined && typeof value.clientSecret !== "string") return undefined;
  if (value.sealed !== undefined && !isSealed(value.sealed)) return undefined;
  const expires = value.clientSecretExpiresAt;
  if (expires !== undefined && (typeof expires !== "number" || !Number.isFinite(expires))) return undefined;
  const secret = value.clientSecret || value.sealed;
  if (secret && expires && expires * 1000 <= now + SECRET_EXPIRY_MARGIN_MS) return undefined;
  return value as unknown as Registration;
}

/**
 * Step 4: the client to sign in with at `as`, in this order: the `--client-id` given on this
 * command line (a Client ID Metadata Document when it is an https URL, sent as it is); else the client
 * this tool registered there before, for these redirect URIs; else one registered now (RFC 7591), under
 * the registration's lock. Throws a LoginError when the server offers no way to get one.
 */
async function obtainClient(
  config: Config,
  as: Oauth.AuthorizationServer,
  deps: Deps,
  { trace, report, again }: { trace?: Trace; report?: ResourceReport; again?: boolean },
): Promise<{ settings: Partial<Config>; origin: ClientOrigin; registration?: string }> {
  if (config.clientId) {
    const document = parseUrl(config.clientId)?.protocol === "https:";
    const accepted = as.client_id_metadata_document_supported === true;
    report?.(
      document && !accepted ? "warn" : "ok",
      `client: "${config.clientId}" (--client-id)${
        document ? `, a client ID metadata document${accepted ? "" : " the server does not say it accepts"}` : ""
      }`,
    );
    return { settings: {}, origin: "given" };
  }
  const redirectUris = registrationRedirects(config);
  const name = registrationName(as.issuer, redirectUris);
  const remembered = async () =>
    await openRegistration(
      usableRegistration(await deps.storage.read(`${name}.json`), as.issuer, redirectUris, deps.now()),
      deps,
    );
  let registration = again ? undefined : await remembered();
  let origin: ClientOrigin = "remembered";
  if (!registration) {
    if (typeof as.registration_endpoint !== "string") throw noClient(as);
    const lock = await lockEntry(name, deps, "is registering this tool as a client");
    try {
      registration = again ? undefined : await remembered(); // another process may have just registered
      if (!registration) {
        registration = await registerClient(as, redirectUris, deps, trace);
        await saveRegistration(config, deps, name, registration);
        origin = "registered";
      }
    } finally {
      lock.release();
    }
  }
  report?.(
    "ok",
    `client: "${registration.clientId}", ${
      origin === "registered" ? "registered now" : "registered before"
    } (RFC 7591)`,
  );
  return {
    settings: {
      clientId: registration.clientId,
      clientSecret: registration.clientSecret,
      clientAuth: registration.authMethod,
    },
    origin,
    registration: name,
  };
}

/**
 * Writes a registration's file (under its lock): its client secret sealed under the key of a keychain
 * item of its own, as an entry's refresh token is (`--token-storage`: `keychain`, or `auto` where a
 * keychain answers), else in the file, which `auto` says. Throws a LoginError for `keychain` when no
 * keychain answers.
 */
async function saveRegistration(config: Config, deps: Deps, name: string, registration: Registration): Promise<void> {
  const path = `${deps.storage.dir}/${name}.json`;
  let stored: Registration = registration;
  if (registration.clientSecret && config.tokenStorage !== "file") {
    const { clientSecret, ...rest } = registration;
    const owner: ItemOwner = { issuer: registration.issuer, clientId: registration.clientId, kind: "client", path };
    try {
      stored = { ...rest, sealed: await sealSecrets(owner, { client_secret: clientSecret }, deps) };
    } catch (error) {
      if (!(error instanceof KeychainProblem)) throw error;
      if (config.tokenStorage === "keychain") throw keychainRequired(error, "keep the registered client's secret");
      say(
        deps,
        `warning: Keeping the registered client's secret in ${path} (readable only by you), not in the keychain: ${error.reason}`,
      );
    }
  }
  await deps.storage.write(`${name}.json`, JSON.stringify(stored, null, 2) + "\n");
}

/**
 * A registration with its client secret in the clear: opened from the keychain when sealed (one read
 * at most a process). Undefined when the secret cannot be had any more (its item is gone: the client is
 * registered again); a LoginError when no keychain answers now.
 */
async function openRegistration(registration: Registration | undefined, deps: Deps): Promise<Registration | undefined> {
  if (!registration?.sealed) return registration;
  try {
    const clientSecret = await sealedSecret(registration.sealed, "client_secret", deps);
    return clientSecret ? { ...registration, clientSecret } : undefined;
  } catch (error) {
    if (error instanceof SecretsGone) return undefined;
    if (!(error instanceof KeychainProblem)) throw error;
    throw new LoginError(
      "failure",
      `Cannot use the client this tool registered at ${
        displayIssuer(registration.issuer)
      }: its secret is in the keychain, and ${error.reason}`,
      { hint: error.remedy.replace(/, or use --token-storage file$/, "") },
    );
  }
}

/** The error for a server that offers this tool no client: no registration endpoint (and no client of the person's). */
function noClient(as: Oauth.AuthorizationServer): LoginError {
  const issuer = displayIssuer(as.issuer);
  const documents = as.client_id_metadata_document_supported === true;
  return new LoginError(
    "config",
    documents
      ? `The server ${issuer} registers no clients (it has no registration endpoint); it takes client ID metadata documents`
      : `The server ${issuer} offers no way to get a client: no registration endpoint (RFC 7591) and no client ID metadata documents`,
    {
      hint: documents
        ? "pass --client-id with the https URL of your client's metadata document, or the id of a client registered there"
        : `register a client there (redirect URI http://127.0.0.1/callback, any port) and pass --client-id ID, or keep it in a profile with --issuer ${
          shellWord(issuer)
        } (--save-profile NAME)`,
    },
  );
}

/**
 * Registers this tool at the server (RFC 7591 §3.1) as a native public client: its loopback redirect
 * URIs, the authorization code and refresh token grants (and the device grant where the server has
 * the device flow), through oauth4webapi and the one sender. The answer is checked: a `client_id`, an
 * authentication method this tool can use, a secret when that needs one. Throws a LoginError.
 */
async function registerClient(
  as: Oauth.AuthorizationServer,
  redirectUris: string[],
  deps: Deps,
  trace?: Trace,
): Promise<Registration> {
  const oauth = await lib();
  const endpoint = assertEndpoint(as.registration_endpoint, "registration_endpoint", as.issuer);
  const metadata = {
    client_name: CLIENT_NAME,
    application_type: "native",
    token_endpoint_auth_method: "none",
    redirect_uris: redirectUris,
    grant_types: ["authorization_code", "refresh_token", ...(as.device_authorization_endpoint ? [DEVICE_GRANT] : [])],
    response_types: ["code"],
  };
  let answer: Oauth.OmitSymbolProperties<Oauth.Client>;
  try {
    const response = await oauth.dynamicClientRegistrationRequest(as, metadata, {
      [oauth.customFetch]: issuerFetch(deps, trace),
      [oauth.allowInsecureRequests]: endpoint.protocol === "http:",
    });
    answer = await oauth.processDynamicClientRegistrationResponse(response);
  } catch (error) {
    const explained = await explain(error, "register this tool as a client");
    if (!(explained instanceof ErrorResponse)) throw explained;
    const detail = explained.description ? ` (${sanitize(explained.description)})` : "";
    throw new LoginError(
      "config",
      `The server at ${endpoint.host} refused to register this tool as a client: it answered "${
        sanitize(explained.code, 60)
      }"${detail}`,
      {
        hint:
          `register a client there yourself (redirect URI http://127.0.0.1/callback, any port) and pass --client-id ID`,
        cause: error,
      },
    );
  }
  const method = String(answer.token_endpoint_auth_method ?? (answer.client_secret ? "client_secret_basic" : "none"));
  const secret = typeof answer.client_secret === "string" && answer.client_secret ? answer.client_secret : undefined;
  const usable = ["none", "client_secret_basic", "client_secret_post"].includes(method);
  if (!usable || (method !== "none" && !secret)) {
    throw new LoginError(
      "invalid_response",
      `The server at ${endpoint.host} registered a client that authenticates with "${sanitize(method, 60)}"${
        usable ? " but sent no secret" : ""
      }, which this tool cannot use`,
      { hint: "register a public client there yourself and pass --client-id ID" },
    );
  }
  const expires = answer.client_secret_expires_at;
  return {
    version: 1,
    issuer: as.issuer,
    redirectUris,
    clientId: answer.client_id,
    ...(secret ? { clientSecret: secret } : {}),
    ...(secret && typeof expires === "number" && expires > 0 ? { clientSecretExpiresAt: expires } : {}),
    authMethod: method as ClientAuthMethod,
    registeredAt: deps.now(),
  };
}

// ── 24 Step-up: an API that asks for more scope or a stronger sign-in (RFC 6750, RFC 9470) ─────────────────────────

/** What an API's refusal asks for, from its challenge (RFC 6750 §3.1, RFC 9470 §3). */
interface StepUp {
  /** `insufficient_scope` (with the scope wanted) or `insufficient_user_authentication`. */
  error: "insufficient_scope" | "insufficient_user_authentication";
  scope?: string;
  acrValues?: string;
  maxAge?: number;
  description?: string;
}

/** The step-up a 403 `insufficient_scope` or a 401 `insufficient_user_authentication` asks for, or undefined. Pure. */
function stepUpAsked(status: number, challenges: Oauth.WWWAuthenticateChallenge[]): StepUp | undefined {
  const found = challenges.find((c) => c.scheme === "bearer" || c.scheme === "dpop");
  const p = found?.parameters;
  if (!p) return undefined;
  const description = p.error_description;
  if (status === 403 && p.error === "insufficient_scope" && p.scope?.trim()) {
    return { error: p.error, scope: p.scope.trim(), description };
  }
  if (status !== 401 || p.error !== "insufficient_user_authentication") return undefined;
  const maxAge = p.max_age !== undefined && /^\d{1,9}$/.test(p.max_age) ? Number(p.max_age) : undefined;
  const acrValues = p.acr_values?.trim() || undefined;
  return acrValues || maxAge !== undefined ? { error: p.error, acrValues, maxAge, description } : undefined;
}

/** What a step-up asks for, in words: `the scope "a b"`, `acr_values "x" and max_age 0`. Pure. */
function stepUpWords(asked: Pick<StepUp, "scope" | "acrValues" | "maxAge">): string {
  if (asked.scope !== undefined) return `the scope "${sanitize(asked.scope, 120)}"`;
  return [
    ...(asked.acrValues ? [`acr_values "${sanitize(asked.acrValues, 80)}"`] : []),
    ...(asked.maxAge !== undefined ? [`max_age ${asked.maxAge}`] : []),
  ].join(" and ");
}

/** `--acr-values` and `--max-age` (RFC 9470), checked; throws a `usage` LoginError for a bad age. Pure. */
const stepUpSettings = (function stepUpSettings(flags: FlagValues): Pick<Config, "acrValues" | "maxAge"> {
  const maxAge = flags["max-age"];
  if (maxAge !== undefined && !/^\d{1,9}$/.test(maxAge)) {
    throw new LoginError("usage", `The maximum age "${sanitize(maxAge)}" is not a whole number of seconds`, {
      hint: "give how long ago you may have signed in, e.g. --max-age 300 (0: sign in again now)",
    });
  }
  const acrValues = flags["acr-values"]?.trim() || undefined;
  return { ...(acrValues ? { acrValues } : {}), ...(maxAge !== undefined ? { maxAge: Number(maxAge) } : {}) };
}).bind(undefined);

/** The authorization parameters with `acr_values` and `max_age` as the flags give them (replacing a `--param`'s). Pure. */
const withStepUpParams = (function withStepUpParams(
  params: [string, string][],
  settings: Pick<Config, "acrValues" | "maxAge">,
): [string, string][] {
  const set: [string, string][] = [];
  if (settings.acrValues) set.push(["acr_values", settings.acrValues]);
  if (settings.maxAge !== undefined) set.push(["max_age", String(settings.maxAge)]);
  return [...params.filter(([key]) => !set.some(([name]) => name === key)), ...set];
}).bind(undefined);

/**
 * Why the cached sign-in does not meet `--acr-values` / `--max-age` (RFC 9470), or undefined when it does
 * (or neither is asked): its `acr` must be one of the values, and it must date from at most `maxAge`
 * seconds before `now` (ms). Pure.
 */
function unmetAuthentication(
  entry: Pick<TokenSet, "acr" | "authTime" | "issuedAt">,
  config: Pick<Config, "acrValues" | "maxAge">,
  now: number,
): string | undefined {
  if (config.acrValues && !scopeList(config.acrValues).some((acr) => scopeList(entry.acr ?? "").includes(acr))) {
    return `its authentication context class (${
      entry.acr ? `"${sanitize(entry.acr, 60)}"` : "not stated"
    }) is not among --acr-values "${sanitize(config.acrValues, 80)}"`;
  }
  const at = entry.authTime ?? entry.issuedAt;
  if (config.maxAge !== undefined && (at === undefined || now - at > config.maxAge * 1000)) {
    return `it dates from ${at === undefined ? "an unknown time" : relativeTime(at, now)}, more than --max-age ${
      plural(config.maxAge, "second")
    } ago`;
  }
  return undefined;
}

/**
 * The configuration a step-up signs in with, or undefined when it cannot: for `insufficient_scope`,
 * the union of the granted and the asked scopes, for an API's entry only (another entry's scope is the
 * person's choice, and its cache key); for `insufficient_user_authentication`, its `acr_values` and
 * `max_age` as authorization parameters. Undefined too when nothing new would be asked. Pure.
 */
function stepUpConfig(config: Config, entry: TokenSet, asked: StepUp): Config | undefined {
  if (asked.error === "insufficient_scope") {
    if (!config.protectedResource?.resource) return undefined;
    const held = entry.scope ?? entry.requestedScope;
    const scope = unionScope(held, asked.scope!);
    return scopeList(scope).length > scopeList(held).length ? { ...config, scope } : undefined;
  }
  const settings = { acrValues: asked.acrValues ?? config.acrValues, maxAge: asked.maxAge ?? config.maxAge };
  return { ...config, ...settings, params: withStepUpParams(config.params, settings) };
}

/**
 * After an API's refusal that asks for more (`stepUpAsked`): signs in again, once for each kind
 * (`stepped` holds those done), and returns the new entry and configuration; undefined when no step-up
 * applies. A refusal of a kind already stepped up for ends with the API's words (`refusal`, which the
 * caller throws once the answer is written); so does one when no person can sign in (no terminal, no
 * --interactive), saying what to run, and one for a grant without a person (`--grant`), which never
 * steps up.
 */
async function stepUp(
  config: Config,
  deps: Deps,
  { name, entry, answer, stepped }: { name: string; entry: TokenSet; answer: Answer; stepped: Set<string> },
): Promise<{ config: Config; entry: TokenSet } | { refusal: LoginError } | undefined> {
  const asked = stepUpAsked(answer.status, await challengesOf(answer));
  if (!asked) return undefined;
  const host = new URL(config.request?.url ?? config.protectedResource!.url).host;
  const detail = asked.description ? ` (${sanitize(asked.description)})` : "";
  if (stepped.has(asked.error)) {
    return {
      refusal: new LoginError(
        "failure",
        `The API at ${host} still answers "${asked.error}"${detail} after signing in again for ${stepUpWords(asked)}`,
        {
          hint: asked.error === "insufficient_scope"
            ? "your account may not be allowed that scope at the server: ask the API's operator"
            : "the server did not sign you in as the API asks: ask the API's operator",
        },
      ),
    };
  }
  if (config.grant) {
    // No person to sign in again, and a machine's scope is its configuration's, not the API's to widen.
    return {
      refusal: new LoginError("failure", `The API at ${host} asks for ${stepUpWords(asked)}${detail}`, {
        hint: asked.error === "insufficient_scope"
          ? `a grant without a person asks for the scope it is configured with: add it to --scope`
          : "a grant without a person has no sign-in to make stronger: ask the API's operator",
      }),
    };
  }
  const next = stepUpConfig(config, entry, asked);
  if (!next) return undefined;
  if (!config.interactive && !deps.canPrompt) {
    return {
      refusal: new LoginError("login_required", `The API at ${host} asks for ${stepUpWords(asked)}${detail}`, {
        hint: `sign in again for it: run "oauth-login login${
          resourceFlags(next)
        }" (or pass --interactive to let this command sign you in)`,
      }),
    };
  }
  stepped.add(asked.error);
  say(deps, `The API at ${host} asks for ${stepUpWords(asked)}${detail}: signing in again`);
  return await loginAndSaveWith(next, deps, name);
}

/** The flags of a login for `config`: `--resource URL` and the scope for an API's entry, else the usual (`loginFlags`). */
function resourceFlags(config: Config): string {
  const extra = [
    ...(config.acrValues ? [` --acr-values ${shellWord(sanitize(config.acrValues))}`] : []),
    ...(config.maxAge !== undefined ? [` --max-age ${config.maxAge}`] : []),
  ].join("");
  const api = config.protectedResource;
  if (!api) return `${loginFlags(config)}${extra}`;
  return ` --resource ${shellWord(sanitize(api.resource ?? api.url))}${
    config.scope ? ` --scope ${shellWord(sanitize(config.scope))}` : ""
  }${extra}`;
}

/**
 * `token` and `fetch` with `--acr-values` / `--max-age` (RFC 9470): a cached sign-in that does not meet
 * them is made again with them, when a person can answer; else exit 4 with what to run.
 */
async function meetAuthentication(
  config: Config,
  deps: Deps,
  found: { name: string; entry: TokenSet },
): Promise<TokenSet> {
  const unmet = unmetAuthentication(found.entry, config, deps.now());
  if (!unmet) return found.entry;
  const where = displayIssuer(found.entry.metadata.issuer as string ?? config.issuer);
  if (!config.interactive && !deps.canPrompt) {
    throw new LoginError("login_required", `The cached sign-in at ${where} is not enough: ${unmet}`, {
      hint: `run "oauth-login login${resourceFlags(config)}" (or pass --interactive to let this command sign you in)`,
    });
  }
  say(deps, `The cached sign-in at ${where} is not enough (${unmet}): signing in again`);
  return (await loginAndSaveWith(config, deps, found.name)).entry;
}

/** What a refresh keeps of the sign-in an entry came from: the API it is for, when and how the person signed in. */
function previousSignIn(previous: TokenSet): Partial<TokenSet> {
  const { protectedResource, authTime, acr } = previous;
  return {
    ...(protectedResource ? { protectedResource } : {}),
    ...(authTime !== undefined ? { authTime } : {}),
    ...(acr !== undefined ? { acr } : {}),
  };
}

/**
 * What a sign-in's entry records of it: the API whose metadata chose the server (RFC 9728), when the
 * person signed in and with which authentication context class (RFC 9470): the ID token's `auth_time`
 * and `acr` (oauth4webapi has validated it), else the sign-in's time and the `acr_values` asked for. Pure.
 */
function signedIn(
  config: Partial<Pick<Config, "params" | "protectedResource">>,
  tokens: Oauth.TokenEndpointResponse,
  now: number,
): Partial<TokenSet> {
  const claims = jwtClaims(tokens.id_token);
  const authTime = typeof claims?.auth_time === "number" && claims.auth_time * 1000 <= now
    ? claims.auth_time * 1000
    : now;
  const asked = config.params?.find(([key]) => key === "acr_values")?.[1];
  const acr = typeof claims?.acr === "string" ? claims.acr : asked;
  const api = config.protectedResource;
  return {
    ...(api?.resource ? { protectedResource: { resource: api.resource, registration: api.registration } } : {}),
    authTime,
    ...(acr ? { acr } : {}),
  };
}

// ── 25 Commands: login, token, whoami, profiles, logout ────────────────────────────────────────────────────────────

/** Logs in and keeps the tokens; says who logged in, and what to try when no refresh token came. */
async function loginAndSave(config: Config, deps: Deps, name: string): Promise<TokenSet> {
  return (await loginAndSaveWith(config, deps, name)).entry;
}

/**
 * `loginAndSave`, returning the configuration the sign-in used too (an API's client may have been
 * registered again, `signInAtResource`); `metadata`: the server's, when it was just discovered.
 */
async function loginAndSaveWith(
  config: Config,
  deps: Deps,
  name: string,
  metadata?: Oauth.AuthorizationServer,
): Promise<{ entry: TokenSet; config: Config }> {
  if (config.grant) return { entry: await grantAndSave(config, deps, name), config }; // no person signs in
  // Before the browser opens: a sign-in whose tokens cannot be kept would be wasted (and left unrevoked).
  await deps.storage.prepare?.(`${name}.json`);
  await keychainReady(config, deps);
  let result: SignInResult;
  if (config.protectedResource?.resource) ({ config, result } = await signInAtResource(config, deps, metadata));
  else result = await signIn(config, deps, metadata);
  const entry = toTokenSet(config, result.tokens, {
    now: deps.now(),
    metadata: result.metadata as unknown as Record<string, unknown>,
    authMethod: result.authMethod,
    user: result.user,
    subject: result.subject,
    dpop: result.dpop,
  });
  // Under the entry's lock, as every writer of an entry: never in the middle of another process's refresh.
  const lock = await lockEntry(name, deps);
  try {
    // What the file held: its keychain item, if another, is removed; its secrets' place, if the file, said once.
    const text = await deps.storage.read(`${name}.json`).catch(() => undefined);
    await saveEntry(config, deps, name, entry, { previous: text === undefined ? undefined : parseTokenSet(text) });
  } finally {
    lock.release();
  }
  announceLogin(config, result, entry, deps);
  return { entry, config };
}

/** Says who logged in, and what to try when scopes or the refresh token did not come. */
function announceLogin(config: Config, result: SignInResult, entry: TokenSet, deps: Deps): void {
  if (!config.quiet) say(deps, `Logged in as ${sanitize(result.user ?? "an unnamed user")}`);
  const missing = missingScopes(result.scope, result.tokens, (config.resources?.length ?? 0) > 0);
  const remedy = refreshTokenRemedy(result.scope, result.metadata, config);
  const droppedOffline = !entry.refreshToken && scopeList(result.scope).includes("offline_access");
  if (droppedOffline && missing.length === 0 && remedy === "; try --prompt consent") {
    // A strict OpenID server (OpenID Connect Core §11) grants offline_access only with prompt=consent.
    say(deps, "warning: The server did not grant offline_access, so it issued no refresh token");
    say(deps, "note: Log in with --prompt consent to get one (strict OpenID servers need it)");
    return;
  }
  if (missing.length > 0) say(deps, `warning: The server did not grant ${sanitize(missing.join(" "))}`);
  if (!entry.refreshToken) {
    say(
      deps,
      `note: The server issued no refresh token, so you will sign in again when this token expires${remedy}`,
    );
  }
}

/** `login`: the browser login; the tokens are cached for `token`. */
async function loginCommand(config: Config, deps: Deps): Promise<void> {
  const entry = config.protectedResource
    ? (await resourceLogin(config, deps)).entry
    : await loginAndSave(config, deps, cacheKey(config));
  if (config.json) {
    deps.stdout(
      JSON.stringify({
        issuer: entry.metadata.issuer,
        user: entry.user ?? null,
        sub: entry.subject ?? null,
        access_token: entry.accessToken,
        token_type: entry.tokenType,
        expires_at: isoExpiry(entry),
        scope: entry.scope ?? null,
        refresh_token: entry.refreshToken ?? null,
        id_token: entry.idToken ?? null,
        ...grantFields(entry),
      }) + "\n",
    );
  }
}

/** An entry's grant without a person, for JSON output: which grant, its sources and the issued token type. */
function grantFields(entry: TokenSet): Record<string, string | null> {
  if (!entry.grant) return {};
  return {
    grant: entry.grant,
    subject_token_from: entry.subjectTokenFrom ?? null,
    actor_token_from: entry.actorTokenFrom ?? null,
    issued_token_type: entry.issuedTokenType ?? null,
  };
}

/** The ExecCredential versions kubectl may ask for, newest first. */
const EXEC_CREDENTIAL_VERSIONS = ["client.authentication.k8s.io/v1", "client.authentication.k8s.io/v1beta1"];

/**
 * What kubectl tells a credential plugin in `KUBERNETES_EXEC_INFO` (an ExecCredential with no status):
 * the `apiVersion` to answer in, and `spec.interactive`, whether a person can answer on stdin.
 * Undefined when the variable is unset (not run by kubectl). Throws a `config` LoginError for text
 * that is not an ExecCredential; `version` is checked by `token --format exec-credential` alone.
 */
const parseExecInfo: (text: string | undefined) => { apiVersion: string; interactive: boolean } | undefined =
  (function parseExecInfo(
    text: string | undefined,
  ): { apiVersion: string; interactive: boolean } | undefined {
    if (text === undefined || text === "") return undefined;
    let info: { apiVersion?: unknown; kind?: unknown; spec?: { interactive?: unknown } } | undefined;
    try {
      info = JSON.parse(text);
    } catch { /* reported below */ }
    if (!info || typeof info !== "object" || typeof info.apiVersion !== "string" || info.kind !== "ExecCredential") {
      throw new LoginError("config", "KUBERNETES_EXEC_INFO is not a kubectl ExecCredential", {
        hint: "unset KUBERNETES_EXEC_INFO: kubectl sets it itself when it runs a credential plugin",
      });
    }
    return { apiVersion: info.apiVersion, interactive: info.spec?.interactive === true };
  }).bind(undefined);

/** What `token` prints: the bare token, JSON, or a kubectl ExecCredential (in `apiVersion`, v1 by default). */
const formatToken = (function formatToken(
  entry: TokenSet,
  format: OutputFormat,
  apiVersion = EXEC_CREDENTIAL_VERSIONS[0],
): string {
  // The bare token first: the hot path then creates no Date (its first use costs about 1 MiB).
  if (format === "text") return `${entry.accessToken}\n`;
  const expiresAt = isoExpiry(entry);
  if (format === "json") {
    return JSON.stringify({
      access_token: entry.accessToken,
      token_type: entry.tokenType,
      expires_at: expiresAt,
      scope: entry.scope ?? null,
    }) + "\n";
  }
  return JSON.stringify({
    apiVersion,
    kind: "ExecCredential",
    status: { token: entry.accessToken, ...(expiresAt ? { expirationTimestamp: expiresAt } : {}) },
  }) + "\n";
}).bind(undefined);

/**
 * `token`: prints a valid access token. Refreshes under an exclusive lock when it expires within
 * `--min-ttl` (re-reading the entry once the lock is held: another process may have refreshed), and
 * logs in only when a person can answer.
 */
const tokenCommand = (async function tokenCommand(config: Config, deps: Deps): Promise<void> {
  // Run by kubectl: answer in the ExecCredential version it names, and sign in only when it says a
  // person can answer (spec.interactive), whatever --interactive or the terminals say.
  const exec = parseExecInfo(deps.env("KUBERNETES_EXEC_INFO"));
  if (exec && config.format === "exec-credential" && !EXEC_CREDENTIAL_VERSIONS.includes(exec.apiVersion)) {
    throw new LoginError(
      "config",
      `kubectl asks for the ExecCredential version "${sanitize(exec.apiVersion, 80)}", which this tool does not speak`,
      { hint: `set apiVersion in the kubeconfig's exec block to one of ${EXEC_CREDENTIAL_VERSIONS.join(", ")}` },
    );
  }
  const found = await entryFor(config, deps);
  if (found.config) config = found.config;
  let { name, entry } = found;
  if (!entry && config.protectedResource) {
    // The first sign-in for an API: its metadata says where (RFC 9728), when a person can answer.
    const required = resourceLoginRequired(config, deps, exec?.interactive);
    if (required) throw required;
    ({ name, entry, config } = await resourceLogin(config, deps));
  }
  entry = await usableEntry(config, deps, { name, entry }, exec ? exec.interactive : undefined);
  if (!B64TOKEN.test(entry.accessToken)) throw unusableToken(config);
  if (config.format === "headers") {
    if (entry.tokenType === "N_A") throw notAnAccessToken(entry);
    // A DPoP proof needs the entry's private key (sealed: one keychain read); a Bearer token needs nothing more.
    const proving = holds(entry, "dpop_key") ? await openEntry(entry, deps, "prove the DPoP-bound token") : entry;
    return deps.stdout(await headerLines(proving, config.request!, deps));
  }
  deps.stdout(formatToken(entry, config.format, exec?.apiVersion));
}).bind(undefined);

/**
 * The entry `token`, `fetch` and `exec` use, valid for at least `--min-ttl`: the one found (an API's
 * first sign-in is the caller's), for the resource asked for, meeting `--acr-values` / `--max-age`
 * (unless kubectl says nobody can sign in), renewed when due (`renew`: refreshed, the grant run again,
 * or a sign-in where a person can answer). `--dpop` with a cached Bearer token runs the grant again,
 * signs in again, or says it cannot.
 */
const usableEntry = (async function usableEntry(
  config: Config,
  deps: Deps,
  found: { name: string; entry?: TokenSet },
  kubectlInteractive?: boolean,
): Promise<TokenSet> {
  const name = found.name;
  let entry = found.entry;
  let rejected: string | undefined;
  if (entry && config.dpop && !holds(entry, "dpop_key")) {
    // --dpop asks for what the cached Bearer token is not: the grant runs again, or a person signs in again.
    if (config.grant) rejected = entry.accessToken;
    else if (!config.interactive && !deps.canPrompt) throw loginRequired(config, "No DPoP-bound token is cached");
    entry = undefined;
  }
  if (
    entry && entry.resource !== undefined && config.resources?.length === 1 && config.resources[0] !== entry.resource
  ) {
    entry = await forResource(config, deps, name, config.resources[0]);
  }
  if (entry && (config.acrValues || config.maxAge !== undefined) && kubectlInteractive !== false) {
    entry = await meetAuthentication(config, deps, { name, entry });
  }
  if (!entry || !isFresh(entry, deps.now(), config.minTtlMs)) {
    entry = await renew(config, deps, name, entry, kubectlInteractive, rejected);
  }
  return entry;
}).bind(undefined);

/** A token exchange's token that is not an access token (`N_A`, RFC 8693 §2.2.1): it is never sent as one. */
function notAnAccessToken(entry: TokenSet): LoginError {
  return new LoginError(
    "usage",
    `The cached token is a "${sanitize(entry.issuedTokenType ?? "token")}", not an access token (token_type N_A)`,
    { hint: 'it is printed by "oauth-login token" and given by "oauth-login exec", never sent by this tool' },
  );
}

/** `whoami`: who is logged in, with which scopes, until when; exit 4 when nobody is. */
async function whoamiCommand(config: Config, deps: Deps): Promise<void> {
  if (config.all) return await whoamiAll(config, deps);
  const found = await entryFor(config, deps);
  if (found.config) config = found.config;
  const { entry } = found;
  const now = deps.now();
  const expired = entry !== undefined && hasExpired(entry, now);
  const why = !entry
    ? "Not logged in"
    : expired && !renewable(entry)
    ? "The cached token has expired and cannot be refreshed"
    : undefined;
  if (!entry || why) {
    const named = entry?.metadata.issuer;
    const api = config.protectedResource && !entry ? notSignedInForApi(config) : undefined;
    if (config.json) {
      deps.stdout(
        JSON.stringify({
          logged_in: false,
          issuer: typeof named === "string" ? named : api ? null : displayIssuer(config.issuer),
          client_id: config.clientId,
          ...(config.protectedResource ? { resource: config.protectedResource.resource ?? null } : {}),
          reason: api?.message ?? why,
        }) + "\n",
      );
    }
    throw api ?? loginRequired(config, why!, { named });
  }
  if (config.json) {
    deps.stdout(
      JSON.stringify({
        logged_in: true,
        issuer: entry.metadata.issuer ?? entry.issuer,
        client_id: entry.clientId,
        user: entry.user ?? null,
        sub: entry.subject ?? null,
        scope: entry.scope ?? null,
        expires_at: isoExpiry(entry),
        expired,
        refreshable: renewable(entry),
        secrets: secretsPlace(entry),
        ...(entry.protectedResource ? { resource: entry.protectedResource.resource } : {}),
        ...grantFields(entry),
      }) + "\n",
    );
    return;
  }
  deps.stdout(whoamiText(entry, now));
}

/**
 * `whoami`'s lines for an entry: who (or which client, by which grant), the API it is for, the scopes,
 * the token's state, and where its long-lived secrets are kept. Pure.
 */
function whoamiText(entry: TokenSet, now: number): string {
  const expired = hasExpired(entry, now);
  const refreshable = holds(entry, "refresh_token");
  const renewed = refreshable ? "refreshed" : "renewed";
  const expiry = entry.expiresAt === undefined
    ? `has no stated expiry${
      renewable(entry) ? `; it is renewed within ${roughDuration(UNKNOWN_LIFETIME_S * 1000)} of issue` : ""
    }`
    : expired
    ? `expired ${relativeTime(entry.expiresAt, now)}; it will be ${renewed} when next used`
    : `expires ${relativeTime(entry.expiresAt, now)} (${new Date(entry.expiresAt).toISOString()})`;
  const issuer = sanitize(entry.metadata.issuer ?? entry.issuer);
  const grant = entry.grant
    ? `  grant:   ${entry.grant}${
      entry.subjectTokenFrom ? `, subject token from ${sanitize(entry.subjectTokenFrom)}` : ""
    }${entry.actorTokenFrom ? `, actor token from ${sanitize(entry.actorTokenFrom)}` : ""}\n` +
      (entry.issuedTokenType ? `  issued:  ${sanitize(entry.issuedTokenType)}\n` : "")
    : "";
  return (entry.grant
    ? `Token from ${issuer} ${grantedTo(entry)}\n`
    : `Logged in to ${issuer} as ${sanitize(entry.user ?? entry.subject ?? "an unnamed user")}\n`) +
    `  client:  ${sanitize(entry.clientId)}\n` + grant +
    (entry.protectedResource ? `  for:     the API ${sanitize(entry.protectedResource.resource)}\n` : "") +
    `  scopes:  ${entry.scope === "" ? "(none)" : sanitize(entry.scope ?? "(not stated by the server)")}\n` +
    `  token:   ${expiry}\n` +
    `  refresh: ${
      refreshable
        ? entry.refreshExpiresAt === undefined
          ? "yes"
          : `${entry.refreshExpiresAt > now ? "yes, until" : "the server said it expired at"} ${
            new Date(entry.refreshExpiresAt).toISOString()
          }`
        : entry.grant
        ? "no; the grant runs again when the token is due"
        : "no (sign in again when the token expires)"
    }\n` + secretsLine(entry);
}

/** Where an entry's long-lived secrets are: "keychain", "file", or null when it has none. Pure. */
function secretsPlace(entry: TokenSet): "keychain" | "file" | null {
  return entry.sealed ? "keychain" : Object.keys(secretsOf(entry)).length > 0 ? "file" : null;
}

/** `whoami`'s line on where the entry's long-lived secrets are kept (none without such secrets). Pure. */
function secretsLine(entry: TokenSet): string {
  const place = secretsPlace(entry);
  if (place === null) return "";
  if (place === "keychain") return `  secrets: ${secretWords(entry.sealed!.holds)}: in the keychain (sealed)\n`;
  const why = entry.keptInFile === "chosen"
    ? "--token-storage file"
    : entry.keptInFile
    ? `no keychain answered: ${sanitize(entry.keptInFile, 120)}`
    : "saved by an earlier version; moved to the keychain at the next refresh";
  return `  secrets: ${secretWords(Object.keys(secretsOf(entry)) as SecretKind[])}: in the token cache file (${why})\n`;
}

/**
 * `whoami --all`: every cached login, with its profile, issuer, client, user and token state; an entry
 * that cannot be read or is refused is named in one warning line and skipped; exit 4 when none is listed.
 */
async function whoamiAll(config: Config, deps: Deps): Promise<void> {
  const now = deps.now();
  const entries: TokenSet[] = [];
  for (const name of (await deps.storage.list()).sort()) {
    let text: string | undefined;
    try {
      text = await deps.storage.read(`${name}.json`);
    } catch (error) {
      if (!(error instanceof LoginError)) throw error;
      say(deps, `warning: ${error.message}; it is skipped${error.hint ? ` (${error.hint})` : ""}`);
      continue;
    }
    const entry = text === undefined ? undefined : parseTokenSet(text);
    if (entry) entries.push(entry);
    else if (text !== undefined) {
      say(deps, `warning: The cached token at "${deps.storage.dir}/${name}.json" is unreadable; it is skipped`);
    }
  }
  if (entries.length === 0) {
    throw new LoginError("login_required", "Not logged in anywhere", { hint: 'run "oauth-login login"' });
  }
  if (config.json) {
    deps.stdout(
      JSON.stringify(entries.map((entry) => ({
        profile: entry.profile ?? null,
        issuer: entry.metadata.issuer ?? entry.issuer,
        client_id: entry.clientId,
        user: entry.user ?? null,
        sub: entry.subject ?? null,
        scope: entry.scope ?? null,
        expires_at: isoExpiry(entry),
        state: entryState(entry, now).state,
        secrets: secretsPlace(entry),
        ...grantFields(entry),
      }))) + "\n",
    );
    return;
  }
  const rows = entries.map((entry) => [
    sanitize(entry.profile ?? "-"),
    sanitize(entry.metadata.issuer ?? entry.issuer),
    sanitize(entry.clientId),
    sanitize(entry.user ?? entry.subject ?? (entry.grant ? `(${entry.grant})` : "-")),
    entryState(entry, now).text,
    secretsPlace(entry) ?? "-",
  ]);
  const table = columns([["PROFILE", "ISSUER", "CLIENT", "USER", "TOKEN", "SECRETS"], ...rows]);
  const width = deps.stdoutIsTerminal ? deps.columns : undefined;
  if (!width || table.split("\n").every((line) => line.length <= width)) return deps.stdout(table);
  // Too wide for the terminal: one block per login, as whoami shows one.
  deps.stdout(
    rows.map(([profile, issuer, client, user, token, secrets]) =>
      `${issuer}${profile === "-" ? "" : ` (profile ${profile})`}\n  client:  ${client}\n  user:    ${user}\n` +
      `  token:   ${token}\n${secrets === "-" ? "" : `  secrets: ${secrets}\n`}`
    ).join(""),
  );
}

/**
 * `profiles`: each profile in the config file with its issuer, who is logged in with it and the
 * token's state, from the cache (no network). `*` marks the profile a command run here would use.
 */
async function profilesCommand(cli: Cli, dotenv: Record<string, string> | undefined, deps: Deps): Promise<void> {
  // A profile named with --profile must exist, as for every other command (a usage error listing the known ones).
  if (cli.flags.profile !== undefined) await selectProfile(cli, dotenv, deps);
  const path = configPath(deps.env, deps.os);
  const file = path ? await readConfigFile(path) : undefined;
  const names = profileNames(file?.data);
  const active = namedProfile(cli.flags, deps.env, dotenv)?.name ??
    (typeof file?.data.default_profile === "string" ? file.data.default_profile : undefined);
  const now = deps.now();
  const rows = [];
  for (const name of names) {
    const flags = profileFlags(
      file!.data[name] as Record<string, unknown>,
      { name, path: path! },
      (text) => say(deps, text),
    );
    const profile: Profile = { name, path: path!, chosenBy: "profiles", flags };
    let row = {
      name,
      active: name === active,
      issuer: flags.issuer ?? null,
      client_id: flags["client-id"] ?? null,
      user: null as string | null,
      sub: null as string | null,
      expires_at: null as string | null,
      state: "logged_out",
      text: "not logged in",
    };
    try {
      // Completed by the environment and .env, as any command run here would be.
      const cli: Cli = { command: "whoami", named: true, flags: {} };
      const config = resolveConfig(cli, deps.env, dotenv, profile, { presetBase: deps.presetBase });
      const { entry } = await entryFor(config, deps);
      const state = entryState(entry, now);
      row = {
        ...row,
        issuer: displayIssuer(config.issuer),
        user: entry?.user ?? null,
        sub: entry?.subject ?? null,
        expires_at: entry ? isoExpiry(entry) : null,
        ...state,
      };
    } catch (error) {
      if (!(error instanceof LoginError)) throw error;
      row = { ...row, state: "invalid", text: `invalid: ${error.message}` };
    }
    rows.push(row);
  }
  if (cli.flags.json) {
    deps.stdout(
      JSON.stringify({
        config_file: path ?? null,
        active: active ?? null,
        profiles: rows.map(({ text: _, ...row }) => row),
      }) + "\n",
    );
    return;
  }
  if (rows.length === 0) {
    deps.stderr(
      `No profiles in ${
        sanitize(path ?? "the config file")
      }; save one with "oauth-login login --issuer URL --client-id ID --save-profile NAME"\n`,
    );
    return;
  }
  deps.stdout(columns([
    ["", "PROFILE", "ISSUER", "USER", "TOKEN"],
    ...rows.map((row) => [
      row.active ? "*" : " ",
      sanitize(row.name),
      sanitize(row.issuer ?? "-"),
      sanitize(row.user ?? row.sub ?? "-"),
      sanitize(row.text),
    ]),
  ]));
}

/**
 * `logout`: revokes at the server where it can (RFC 7009), then deletes the entry regardless; with
 * `--resource R`, also the login for several resources that covered R (one grant: it ends for all).
 */
async function logoutCommand(config: Config, deps: Deps): Promise<void> {
  const trace = makeTrace(config, deps);
  const api = config.protectedResource && !config.all ? await entryFor(config, deps) : undefined;
  if (api?.config) config = api.config;
  const names = config.all
    ? await deps.storage.list()
    : api
    ? [api.name].filter(Boolean)
    : [cacheKey(config), ...(await otherEntries(config, deps, false)).map((found) => found.name)];
  const problems: RevocationProblem[] = [];
  const removed: (TokenSet | undefined)[] = [];
  for (const name of names) {
    const ended = await logoutEntry(name, config, deps, trace);
    if (!ended || ended.outcome === "left") continue;
    removed.push(ended.entry);
    if (Array.isArray(ended.outcome)) problems.push(...ended.outcome);
    if (config.all) {
      const entry = ended.entry;
      const who = entry ? `${displayIssuer(entry.issuer)} (client ${sanitize(entry.clientId)})` : `the entry ${name}`;
      say(deps, `Logged out of ${who}: ${logoutOutcome(ended.outcome)}`);
    }
  }
  if (!config.all) say(deps, loggedOut(config, removed));
  else {
    // Keychain items of this cache folder whose file is gone (a file deleted by hand, an interrupted logout).
    const orphans = await forgetOrphanItems(deps);
    if (orphans > 0) say(deps, `Removed ${plural(orphans, "keychain item")} whose cached login was gone`);
    else if (removed.length === 0) say(deps, "Not logged in anywhere; nothing to do");
  }
  const kinds = new Set(problems.map((problem) => problem.kind));
  const elsewhere = "the local copy was removed; revoke the session in your provider's console if it matters";
  if (kinds.has("server")) {
    throw new LoginError(
      "failure",
      "The server could not confirm the revocation; the tokens may stay valid until they expire",
      { hint: elsewhere },
    );
  }
  if (kinds.has("network")) {
    throw new LoginError(
      "failure",
      "The revocation did not reach the server; the tokens may stay valid until they expire",
      { hint: elsewhere },
    );
  }
  if (kinds.has("keychain")) {
    throw new LoginError(
      "failure",
      "A refresh token was removed here without being revoked, because the keychain that holds it did not give it",
      { hint: "revoke the session in your provider's console if it matters" },
    );
  }
  if (kinds.has("local")) {
    throw new LoginError(
      "failure",
      "Some tokens were removed here without being revoked, because their client secret is not configured",
      {
        hint:
          `next time set ${ENV_VARS.clientSecret} before logging out; revoke the session in your provider's console if it matters`,
      },
    );
  }
}

/** What a single `logout` says it did: the issuer, and the other resources of a login that covered several. */
function loggedOut(config: Config, removed: (TokenSet | undefined)[]): string {
  const named = removed.find((entry) => typeof entry?.metadata.issuer === "string")?.metadata.issuer as string;
  if (config.protectedResource && removed.length === 0) {
    return `Not signed in for the API ${sanitize(config.protectedResource.url)}; nothing to do`;
  }
  const where = named === undefined ? displayIssuer(config.issuer) : sanitize(named);
  if (removed.length === 0) return `Not logged in to ${where}; nothing to do`;
  const wanted = config.resources?.length === 1 ? config.resources[0] : undefined;
  const others = [...new Set(removed.flatMap((entry) => entry?.resources ?? []))].filter((r) => r !== wanted);
  if (wanted === undefined || others.length === 0) return `Logged out of ${where}`;
  const quoted = others.map((resource) => `"${sanitize(resource)}"`);
  const list = quoted.length === 1 ? quoted[0] : `${quoted.slice(0, -1).join(", ")} and ${quoted.at(-1)}`;
  return `Logged out of ${where}: the login for "${sanitize(wanted)}" also covered ${list} (one grant), so ${
    others.length === 1 ? "that is" : "those are"
  } logged out too`;
}

/** How logging out of one entry ended (`logoutOutcome` words it); "left": not the tool's to touch. */
type LogoutOutcome = RevocationProblem[] | "no_endpoint" | "unrevoked";

/**
 * Logs out of one entry under its lock, as every writer of an entry: reads it again once the lock is
 * held (another process may have just refreshed it), revokes what it holds, and removes it and its lock
 * file, so that no refresh waiting for the lock can write it back. Undefined when there is none. A file
 * the tool does not trust is refused (with `--all`: named in a warning and left as it is); the user's own
 * file that others could have changed is removed unrevoked: no secret goes where it says.
 */
async function logoutEntry(
  name: string,
  config: Config,
  deps: Deps,
  trace?: Trace,
): Promise<{ entry?: TokenSet; outcome: LogoutOutcome | "left" } | undefined> {
  const there = await deps.storage.read(`${name}.json`, { allowShared: true }).then((t) => t !== undefined, () => true);
  if (!there) return undefined; // nothing to lock (a lock would create the folder)
  const left = (error: unknown): { outcome: "left" } => {
    if (!(error instanceof Untrusted) || !config.all) throw error;
    say(deps, `warning: ${error.message}; it was left as it is (${error.hint})`);
    return { outcome: "left" };
  };
  let lock: { release(): void };
  try {
    lock = await lockEntry(name, deps);
  } catch (error) {
    return left(error);
  }
  try {
    let text: string | null | undefined;
    try {
      text = await readForLogout(name, deps);
    } catch (error) {
      return left(error);
    }
    if (text === undefined) return undefined; // another logout got there first
    const entry = text === null ? undefined : parseTokenSet(text);
    if (text !== null && (!entry || (!config.all && !belongsTo(entry, config)))) {
      const path = `${deps.storage.dir}/${name}.json`;
      say(deps, `warning: The cached token at "${path}" is unreadable or not for this client; it was left as it is`);
      return { outcome: "left" };
    }
    // An API's entry is revoked with its own client (the secret of this tool's registration, if any).
    const own = entry?.protectedResource && config.all
      ? await resourceConfig(
        { ...config, protectedResource: { url: entry.protectedResource.resource, setAside: [] } },
        entry,
        deps,
      )
      : config;
    // Sealed secrets (one keychain read): without them, what is in the file is revoked, and that is said.
    let open = entry;
    let unread: RevocationProblem | undefined;
    if (entry?.sealed) {
      open = await openEntry(entry, deps, "revoke the refresh token").catch((error) => {
        if (!(error instanceof LoginError || error instanceof SecretsGone)) throw error;
        unread = { text: `${error.message}; it was not revoked`, kind: "keychain" };
        return entry;
      });
    }
    let outcome: LogoutOutcome = open ? await revokeTokenSet(open, own, deps, trace) : "unrevoked";
    if (unread && holds(entry!, "refresh_token")) outcome = [...(Array.isArray(outcome) ? outcome : []), unread];
    for (const problem of Array.isArray(outcome) ? outcome : []) say(deps, `warning: ${problem.text}`);
    // The file (its lock file goes when the lock is released), then the keychain item.
    if (!(await removeEntry(name, entry, deps))) {
      say(
        deps,
        `warning: The keychain item of "${deps.storage.dir}/${name}.json" was left; "oauth-login logout --all" removes it once the keychain answers`,
      );
    }
    return { entry, outcome };
  } finally {
    lock.release();
  }
}

/**
 * The entry's text for `logout`, which must end a login whatever the file's mode: one others can read
 * is read anyway (its tokens are exactly the ones to revoke); null for the user's own file that others
 * could have changed (it is removed, and nothing it names is trusted). Other refusals are thrown.
 */
async function readForLogout(name: string, deps: Deps): Promise<string | null | undefined> {
  try {
    return await deps.storage.read(`${name}.json`);
  } catch (error) {
    if (!(error instanceof Untrusted && error.removable)) throw error;
  }
  try {
    const text = await deps.storage.read(`${name}.json`, { allowShared: true });
    say(
      deps,
      `warning: The token cache file "${deps.storage.dir}/${name}.json" can be read by other users, so its tokens are revoked before it is removed`,
    );
    return text;
  } catch (error) {
    if (!(error instanceof Untrusted && error.removable)) throw error;
    say(deps, `warning: ${error.message}; removing it without revoking its tokens`);
    return null;
  }
}

/** How one entry of `logout --all` ended, in words that blame the server only for what it answered. */
function logoutOutcome(outcome: LogoutOutcome): string {
  if (outcome === "unrevoked") return "removed here, not revoked (others could have changed its file)";
  if (outcome === "no_endpoint") {
    return "removed here; the server has no revocation endpoint, so the tokens stay valid there until they expire";
  }
  if (outcome.length === 0) return "revoked at the server and removed here";
  const kind = outcome[0].kind;
  return kind === "server"
    ? "removed here; the server refused the revocation"
    : kind === "network"
    ? "removed here; the revocation did not reach the server"
    : kind === "keychain"
    ? "removed here; its refresh token was not revoked: the keychain did not give it"
    : "removed here, not revoked: its client secret is not configured";
}

// ── 26 Handing the token on: fetch calls an API, exec runs a program ───────────────────────────────────────────────

/** The body given with `-d`: the text itself, `@FILE`'s bytes, or stdin's with `@-`. */
async function requestBody(request: ResourceRequest, deps: Deps): Promise<Uint8Array<ArrayBuffer> | undefined> {
  const data = request.data;
  if (data === undefined) return undefined;
  if (data === "@-") {
    if (!deps.readStdin) throw new LoginError("usage", "Cannot read the request body from stdin here");
    return await deps.readStdin();
  }
  if (data.startsWith("@")) {
    try {
      return await Deno.readFile(data.slice(1));
    } catch {
      throw new LoginError("usage", `Cannot read the request body from "${sanitize(data.slice(1))}"`, {
        hint: "check the path after -d @",
      });
    }
  }
  return new TextEncoder().encode(data);
}

/**
 * `fetch`: one request to an API with the cached token (refreshed first when it expires within
 * --min-ttl), where `tokenRefusal` lets it go. With no login for an API its settings do not name a
 * server for, the request goes without a token, and a challenge starts the sign-in its metadata
 * describes (`resourceLogin`, RFC 9728). A `use_dpop_nonce` challenge is answered once with the
 * server's nonce; a 401 with `invalid_token` refreshes the token once and sends the request once more;
 * a refusal that asks for more (RFC 6750 `insufficient_scope`, RFC 9470) signs in again once for it
 * (`stepUp`). The answer is written by `writeAnswer`. Exit 0 for 2xx, else 1.
 */
async function fetchCommand(config: Config, deps: Deps): Promise<void> {
  const request = config.request!;
  const trace = makeTrace(config, deps);
  const body = await requestBody(request, deps);
  if (body && !request.headers.some(([key]) => /^content-type$/i.test(key))) {
    const first = new TextDecoder().decode(body.subarray(0, 64)).trimStart()[0];
    const type = first === "{" || first === "[" ? "application/json" : "application/x-www-form-urlencoded";
    request.headers.push(["content-type", type]);
  }
  const found = await entryFor(config, deps);
  if (found.config) config = found.config;
  let { name, entry } = found;
  const tooLarge = `fetch reads at most ${byteSize(API_MAX_BODY_BYTES)}; for more, give the token to curl: ` +
    `"oauth-login token --format headers${resourceFlags(config)} --url URL | curl -H @- URL"`;
  if (!entry && config.protectedResource) {
    // No login for this API yet: the request goes without a token, and only a challenge starts a sign-in.
    const options: SendOptions = {
      trace,
      traceFields: false,
      maxBytes: API_MAX_BODY_BYTES,
      tooLarge,
      urlName: "the URL",
    };
    const init = { method: request.method, headers: new Headers(request.headers), body };
    const answer = await send(deps, new URL(request.url!), init, options);
    if (!(await asksForToken(answer))) return writeAnswer(answer, request, config, deps);
    const required = resourceLoginRequired(config, deps);
    if (required) throw required;
    ({ name, entry, config } = await resourceLogin(config, deps, answer));
  }
  entry = await usableEntry(config, deps, { name, entry });
  if (entry.tokenType === "N_A") throw notAnAccessToken(entry);
  let called = await callApi(config, deps, { name, entry, body, trace, tooLarge });
  const stepped = new Set<string>();
  let refusal: LoginError | undefined;
  for (;;) {
    const next = await stepUp(config, deps, { name, entry: called.entry, answer: called.response, stepped });
    if (!next || "refusal" in next) {
      refusal = next?.refusal;
      break;
    }
    config = next.config;
    called = await callApi(config, deps, { name, entry: next.entry, body, trace, tooLarge });
  }
  writeAnswer(called.response, request, config, deps, refusal);
}

/**
 * One call of `fetch`'s request with `entry`'s token, where `tokenRefusal` lets it go: once more with
 * the server's nonce when it asks for one (RFC 9449 §8, §9), and after a 401 `invalid_token`, once
 * more with a refreshed token. Returns the answer and the entry used last; remembers DPoP nonces.
 */
async function callApi(
  config: Config,
  deps: Deps,
  { name, entry, body, trace, tooLarge }: {
    name: string;
    entry: TokenSet;
    body?: Uint8Array<ArrayBuffer>;
    trace?: Trace;
    tooLarge: string;
  },
): Promise<{ response: Answer; entry: TokenSet }> {
  const request = config.request!;
  let dpop: DpopState | undefined;
  const sendOnce = async (current: TokenSet) => {
    const refusal = tokenRefusal(new URL(request.url!), current);
    if (refusal) throw refusal;
    if (!B64TOKEN.test(current.accessToken)) throw unusableToken(config);
    return await sendWithToken(current, request, body, deps, { dpop, trace, tooLarge });
  };
  const sendWithNonce = async (current: TokenSet) => {
    const response = await sendOnce(current);
    if (!dpop || challengeError(response.headers) !== "use_dpop_nonce" || !response.headers.has("dpop-nonce")) {
      return response;
    }
    trace?.("the server asked for a DPoP nonce: sending once more with it");
    return await sendOnce(current);
  };
  // A DPoP-bound token goes with proofs signed by the entry's key (sealed: one keychain read).
  if (holds(entry, "dpop_key")) entry = await openEntry(entry, deps, "prove the DPoP-bound token");
  dpop = entry.dpopKey ? await dpopState(entry.dpopKey, entry.dpopNonces, deps) : undefined;
  let response = await sendWithNonce(entry);
  if (
    response.status === 401 && challengeError(response.headers) === "invalid_token" && renewable(entry)
  ) {
    trace?.("the server refused the access token: refreshing it and sending once more");
    const nonces = dpop?.nonces;
    entry = entry.resource !== undefined && entry.resources?.[0] !== entry.resource
      ? await forResource(config, deps, name, entry.resource, entry.accessToken) // another resource's token
      : await renew(config, deps, name, entry, undefined, entry.accessToken);
    if (holds(entry, "dpop_key")) entry = await openEntry(entry, deps, "prove the DPoP-bound token");
    dpop = entry.dpopKey ? await dpopState(entry.dpopKey, { ...entry.dpopNonces, ...nonces }, deps) : undefined;
    response = await sendWithNonce(entry);
  }
  if (dpop) await rememberNonces(config, deps, name, dpop);
  return { response, entry };
}

/**
 * Why an API's answer must not be written to a terminal, or undefined when it may: it is not text
 * (not UTF-8, or it holds NUL), or it holds control characters a terminal acts on (escape sequences,
 * a carriage return not ending a line, C1 controls, bidirectional overrides). Tab and line ends pass. Pure.
 */
function terminalProblem(body: Uint8Array): string | undefined {
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(body);
  } catch {
    return "is not text";
  }
  if (text.includes("\0")) return "is not text";
  // deno-lint-ignore no-control-regex
  if (/[\x01-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]|\r(?!\n)/.test(text)) {
    return "holds terminal control characters";
  }
  return undefined;
}

/**
 * `fetch`'s answer: the status line and headers on stderr with --include or --verbose; the body on
 * stdout, byte for byte when stdout is no terminal. On a terminal, a body that is not text or holds
 * control characters is refused, and text gets a final line end, so that the next line starts on its
 * own. A status other than 2xx (a redirect too: never followed) is then an error (exit 1).
 */
function writeAnswer(
  response: Answer,
  request: ResourceRequest,
  config: Config,
  deps: Deps,
  /** The error for a status other than 2xx, when the caller knows better (a step-up refused). */
  refusal?: LoginError,
): void {
  const url = new URL(request.url!);
  if (request.include || config.verbose) {
    const lines = [`HTTP ${response.status} ${sanitize(response.statusText, 80)}`.trimEnd()];
    for (const [key, value] of response.headers) lines.push(`${sanitize(key, 80)}: ${sanitize(value, 2000)}`);
    deps.stderr(lines.join("\n") + "\n\n");
  }
  const problem = deps.stdoutIsTerminal ? terminalProblem(response.body) : undefined;
  if (problem) {
    throw new LoginError(
      "failure",
      `The answer from ${url.host} (HTTP ${response.status}) ${problem}, so it is not written to the terminal`,
      { hint: "redirect it to a file (> FILE) or pipe it to a program (| less), which get it unchanged" },
    );
  }
  deps.stdoutBytes(response.body);
  if (deps.stdoutIsTerminal && response.body.length > 0 && response.body.at(-1) !== 0x0a) deps.stdout("\n");
  if (response.status >= 200 && response.status <= 299) return;
  if (refusal) throw refusal;
  const error = challengeError(response.headers);
  const location = response.headers.get("location");
  const target = location === null ? undefined : URL.parse(location, url) ?? undefined;
  const redirect = response.status >= 300 && response.status <= 399;
  throw new LoginError(
    "failure",
    `The server at ${url.host} answered ${request.method} ${sanitize(url.pathname, 120)} with HTTP ${response.status}` +
      (redirect ? `, a redirect${target ? ` to "${sanitize(target.href, 200)}"` : ""} that is not followed` : "") +
      (error ? ` ("${sanitize(error, 60)}")` : ""),
    {
      hint: redirect
        ? "fetch never follows a redirect, so the token goes nowhere else; fetch the new address if you trust it"
        : response.status === 401
        ? 'the token was refused: check --scope and --resource, or sign in again with "oauth-login login"'
        : response.status === 403
        ? "the token is valid but not allowed to do this: check the scopes the API needs (--scope)"
        : undefined,
    },
  );
}

/** The variable `exec` puts the access token in, unless `--env-name` names another. */
const EXEC_ENV_NAME = "OAUTH_ACCESS_TOKEN";

/** `exec`'s program (what follows `--`) and `--env-name`, checked. Throws a usage LoginError. Pure. */
function resolveProgram(cli: Cli): NonNullable<Config["program"]> {
  const [command, ...args] = cli.program ?? [];
  if (!command) {
    throw new LoginError("usage", "No program to run", {
      hint: 'put it after --: "oauth-login exec -- COMMAND ARGS..."',
    });
  }
  const envName = cli.flags["env-name"] ?? EXEC_ENV_NAME;
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(envName)) {
    throw new LoginError("usage", `The variable name "${sanitize(envName)}" is not one a program can read`, {
      hint: "use letters, digits and _, not starting with a digit",
    });
  }
  return { command, args, envName };
}

/** `exec` with a DPoP-bound token: a program cannot make the proofs (RFC 9449) without the key, which stays here. */
function dpopForExec(): LoginError {
  return new LoginError("usage", "The token is DPoP-bound, and a program cannot make DPoP proofs without its key", {
    hint: 'use "oauth-login fetch" for each request, or "oauth-login token --format headers --url URL" for one; ' +
      "or log in without --dpop for a Bearer token",
  });
}

/**
 * The cached login of this configuration whose scope covers `asked` and more (its key, as `cacheKey`
 * makes it with its own scope): the one `exec --scope` narrows. Undefined when none does.
 */
async function widerLogin(
  config: Config,
  deps: Deps,
  asked: string[],
): Promise<Required<Omit<FoundEntry, "config">> | undefined> {
  for (const name of await deps.storage.list()) {
    const text = await deps.storage.read(`${name}.json`).catch(() => undefined);
    const entry = text === undefined ? undefined : parseTokenSet(text);
    if (!entry || !belongsTo(entry, config)) continue;
    const login = { ...config, scope: entry.requestedScope || undefined };
    if (![cacheKey(login), ...legacyCacheKeys(login)].includes(name)) continue;
    const granted = scopeList(entry.scope ?? entry.requestedScope);
    if (asked.every((scope) => granted.includes(scope)) && granted.length > asked.length) return { name, entry };
  }
  return undefined;
}

/**
 * `exec --scope S` where no login asked for exactly S but one covers more: a token narrowed to S by a
 * refresh that asks for S (RFC 6749 §6), under that login's lock. Its rotated refresh token is saved
 * (the new one keeps the login's scope) and its own access token kept; the narrowed one is not cached.
 * Undefined when no login covers S. Throws when the login cannot be narrowed: no refresh token, a
 * DPoP-bound login, a server that refuses (`invalid_scope`) or grants more than S.
 */
async function narrowedEntry(config: Config, deps: Deps): Promise<TokenSet | undefined> {
  const wide = await widerLogin(config, deps, scopeList(config.scope ?? ""));
  if (!wide) return undefined;
  if (holds(wide.entry, "dpop_key")) throw dpopForExec();
  const what = `Cannot narrow the login's token to "${sanitize(config.scope)}"`;
  const hint = "run without --scope to give the program the login's token as it is, or log in with that --scope";
  const none = () => new LoginError("config", `${what}: the login has no refresh token`, { hint });
  if (!holds(wide.entry, "refresh_token")) throw none();
  const login = { ...config, scope: wide.entry.requestedScope || undefined };
  const lock = await lockEntry(wide.name, deps);
  try {
    const current = await readEntry(login, deps, wide.name);
    if (!current || !holds(current, "refresh_token")) throw none();
    // The refresh token (sealed: one keychain read), and where the rotated one goes, before any request.
    const open = await openEntry(current, deps);
    const item = await refreshItem(login, deps, wide.name, open);
    // Without a scope in the answer, the server granted what was asked (RFC 6749 §5.1).
    const asked = { ...open, scope: config.scope };
    const next = await refreshTokenSet(asked, login, deps, makeTrace(config, deps), current.resource, config.scope)
      .catch((error) => {
        if (!(error instanceof ErrorResponse && error.code === "invalid_scope")) throw error;
        throw new LoginError("failure", `${what}: the server refused a narrower scope in a refresh`, {
          hint,
          cause: error,
        });
      });
    const kept = { ...open, refreshToken: next.refreshToken, dpopNonces: next.dpopNonces };
    await saveEntry(login, deps, wide.name, kept, { previous: current, item });
    const broader = scopeList(next.scope ?? "").filter((scope) => !scopeList(config.scope ?? "").includes(scope));
    if (broader.length > 0) {
      throw new LoginError("failure", `${what}: the server granted "${sanitize(next.scope)}" instead`, {
        hint: `the program was not run; ${hint}`,
      });
    }
    return next;
  } finally {
    lock.release();
  }
}

/**
 * The variables that hold what the tool used to get the token, which `exec`'s program does not get: the
 * client secret, and the variables a subject or actor token was read from (`env:VAR`, `gitlab:VAR`, and
 * GitHub Actions' request token and URL, with which it could mint identity tokens for any audience). Pure.
 */
function credentialVariables(config: Config): string[] {
  const names: string[] = [ENV_VARS.clientSecret];
  for (const from of [config.subjectTokenFrom, config.actorTokenFrom]) {
    const source = from ? parseTokenSource(from, "subject-token-from") : undefined;
    if (source?.kind === "env" || source?.kind === "gitlab") names.push(source.variable);
    if (source?.kind === "github-actions") names.push("ACTIONS_ID_TOKEN_REQUEST_URL", "ACTIONS_ID_TOKEN_REQUEST_TOKEN");
  }
  return names;
}

/**
 * `exec`: runs a program with a valid access token in its environment (`OAUTH_ACCESS_TOKEN`, or the
 * variable `--env-name` names), renewed first as `token` would; never on a command line. A DPoP-bound
 * token is refused (the program could not use it). `--scope` narrower than the cached login's asks for
 * a narrowed token (`narrowedEntry`). Returns the program's exit code; 127 when there is no such
 * program, 126 when it cannot be run.
 */
async function execCommand(config: Config, deps: Deps): Promise<number> {
  const program = config.program!;
  const found = await entryFor(config, deps);
  if (config.dpop || (found.entry && holds(found.entry, "dpop_key"))) throw dpopForExec();
  const narrowing = found.entry === undefined && !config.grant && config.sources.scope === "flag";
  const entry = (narrowing ? await narrowedEntry(config, deps) : undefined) ?? await usableEntry(config, deps, found);
  if (holds(entry, "dpop_key") || /^dpop$/i.test(entry.tokenType)) throw dpopForExec();
  if (!B64TOKEN.test(entry.accessToken)) throw unusableToken(config);
  if (!deps.runProgram) throw new LoginError("cannot_run", "This tool cannot run programs here");
  const shown = `"${sanitize(program.command)}"`;
  try {
    return await deps.runProgram(program.command, {
      args: program.args,
      env: { [program.envName]: entry.accessToken },
      unset: credentialVariables(config).filter((name) => name !== program.envName),
    });
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      throw new LoginError("not_found", `Cannot run ${shown}: there is no such program`, {
        hint: "check its name, or give its path (it is looked for in PATH)",
      });
    }
    if (error instanceof Deno.errors.PermissionDenied) {
      throw new LoginError("cannot_run", `Cannot run ${shown}: this user may not run it`);
    }
    throw error;
  }
}

// ── 27 Doctor: every check, without signing in ─────────────────────────────────────────────────────────────────────

/** One line of `doctor`'s report. */
interface Check {
  status: "ok" | "warn" | "fail";
  topic: string;
  message: string;
}

/**
 * `doctor`'s check of the client id and the redirect URI: the same authorization request a login
 * makes (pushed, or fetched once), nothing opened. An ephemeral redirect is checked with a sample port.
 */
async function checkClient(
  issuer: IssuerClient,
  config: Config,
  deps: Deps,
  add: AddCheck,
): Promise<void> {
  const oauth = await lib();
  const redirect = planRedirect(config.redirectUri);
  const redirectUri = redirectUriFor(redirect, redirect.port || 49152);
  const scope = config.scope ?? defaultScope(issuer.as.scopes_supported);
  const request: PendingRequest = {
    scope,
    redirectUri,
    verifier: oauth.generateRandomCodeVerifier(),
    state: oauth.generateRandomState(),
    nonce: scopeList(scope).includes("openid") ? oauth.generateRandomNonce() : undefined,
  };
  const sent = `the client id "${config.clientId}" and the redirect URI ${redirectUri}`;
  try {
    const answer = await authorizationRequest(issuer, config, request, deps);
    const how = answer.pushed ? "a pushed authorization request (RFC 9126)" : "the authorization request";
    if (answer.checked) {
      add("ok", "client", `the server accepts ${sent} (${how})`);
      add("ok", "client", `client id "${config.clientId}": known to the server`);
      add("ok", "client", `redirect URI ${redirectUri}: accepted`);
    } else {
      add(
        "warn",
        "client",
        `the server's answer to the authorization request (${
          answer.status === undefined ? "none" : `HTTP ${answer.status}`
        }) cannot tell whether it accepts ${sent}`,
      );
    }
  } catch (error) {
    add("fail", "client", `${sent}: ${describeError(error)}`);
    // Which of the two the server named, where its words tell (an unknown client is checked first).
    if (error instanceof LoginError && error.code === "config") {
      const redirectBlamed = /redirect/i.test(error.message);
      add(
        redirectBlamed ? "ok" : "fail",
        "client",
        redirectBlamed
          ? `client id "${config.clientId}": known to the server`
          : `client id "${config.clientId}": rejected`,
      );
      add(
        redirectBlamed ? "fail" : "warn",
        "client",
        redirectBlamed
          ? `redirect URI ${redirectUri}: not registered for this client`
          : `redirect URI ${redirectUri}: not checked (the client id was rejected first)`,
      );
    }
  }
}

/** A failure as one `doctor` sentence: a LoginError's or ErrorResponse's message with its hint, else the text. */
function describeError(error: unknown): string {
  return error instanceof LoginError || error instanceof ErrorResponse
    ? `${error.message}${error.hint ? ` (${error.hint})` : ""}`
    : String(error);
}

/**
 * What is wrong with the file `DENO_CERT` names, or undefined when it holds PEM certificates that
 * TLS accepts (parsed by `Deno.createHttpClient`, which Deno's fetch uses too).
 */
function certificateProblem(path: string): string | undefined {
  let text: string;
  try {
    text = Deno.readTextFileSync(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotCapable) throw error;
    const why = error instanceof Deno.errors.NotFound ? "does not exist" : sanitize((error as Error).message, 120);
    return `DENO_CERT is set to ${path}, which ${why.startsWith("does") ? why : `cannot be read: ${why}`}`;
  }
  const blocks = text.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g) ?? [];
  if (blocks.length === 0) return `DENO_CERT is set to ${path}, which holds no PEM certificate (BEGIN CERTIFICATE)`;
  for (const [index, block] of blocks.entries()) {
    try {
      Deno.createHttpClient({ caCerts: [block] }).close();
    } catch (error) {
      return `DENO_CERT is set to ${path}, whose certificate ${index + 1} of ${blocks.length} does not parse (${
        sanitize((error as Error).message, 80)
      })`;
    }
  }
  return undefined;
}

/** Where one of `doctor`'s checks goes: its status, its topic and one sentence (sanitised there). */
type AddCheck = (status: Check["status"], topic: string, message: string) => void;

/** `doctor`'s config checks (profile, settings and their sources, .env, client key); the Config, or undefined. */
async function doctorConfig(
  cli: Cli,
  dotenv: Record<string, string> | undefined,
  deps: Deps,
  envPath: string,
  add: AddCheck,
): Promise<Config | undefined> {
  let config: Config | undefined;
  let profile: Profile | undefined;
  try {
    // Its warnings (a .env's profile set aside, an unknown key) are lines of the report.
    const warn = (text: string) => add("warn", "config", text.replace(/^warning: /, "").trim());
    profile = await selectProfile(cli, dotenv, { ...deps, stderr: warn });
    if (profile) add("ok", "config", `profile: ${profile.name} (from ${profile.chosenBy}) in ${profile.path}`);
  } catch (error) {
    add("fail", "config", describeError(error));
  }
  const shown = describeEnvPath(envPath, deps.cwd);
  try {
    config = resolveConfig(cli, deps.env, dotenv, profile, { presetBase: deps.presetBase, envFile: shown });
  } catch (error) {
    add("fail", "config", describeError(error));
  }
  if (dotenv) {
    add("ok", "config", `.env: read ${plural(Object.keys(dotenv).length, "variable")} from ${shown}`);
    for (const warning of dotenvWarnings(dotenv)) add("warn", "config", warning);
  } else add("ok", "config", `.env: none at ${shown}`);
  if (config) {
    const from = (key: string) => `from ${config!.sources[key] ?? "default"}`;
    const api = config.protectedResource;
    if (api && !config.issuer) {
      add("ok", "config", `issuer: none: the API at ${api.url} names its server (RFC 9728)`);
    } else if (withoutIssuer(config)) {
      add("ok", "config", `issuer: none (endpoints given by hand; the token endpoint keys the cache)`);
    } else {
      const origin = config.sources.issuer === "default" && config.provider
        ? `from the ${config.provider} preset`
        : from("issuer");
      add("ok", "config", `issuer: ${config.issuer} (${origin})`);
    }
    add(
      "ok",
      "config",
      config.provider ? `provider preset: ${config.provider} (${config.providerReason})` : "provider preset: none",
    );
    for (const [key, flag] of MANUAL_ENDPOINTS) {
      if (config[key] !== undefined) add("ok", "config", `${flag}: ${config[key]} (${from(key)})`);
    }
    doctorTrust(config, shown, deps, add);
    doctorApiSettings(config, cli.target, add);
    doctorClientSettings(config, deps, add);
    if (config.clientKey) {
      try {
        const key = withProjectKey(config, envPath, deps, shown).clientKey!;
        await readClientKey(key);
        add("ok", "config", `client key: ${key} is private and can sign (${from("clientKey")})`);
      } catch (error) {
        add("fail", "config", describeError(error));
      }
    }
  }
  return config;
}

/**
 * `doctor`'s client id line, and for `doctor URL` what the API's metadata decides: the client (when none
 * is given), the person's own settings set aside for it, or, with a server and a client of their own,
 * that the API is not asked.
 */
function doctorApiSettings(config: Config, target: string | undefined, add: AddCheck): void {
  const api = config.protectedResource;
  if (api && !config.clientId) add("ok", "config", "client id: none: the API's server is asked for one (below)");
  else add("ok", "config", `client id: ${config.clientId} (from ${config.sources.clientId ?? "default"})`);
  if (target && !api) {
    add("warn", "config", `${target}: its metadata is not asked, as your settings name the server and the client`);
  }
  for (const item of api?.setAside ?? []) {
    add("warn", "config", `${item}: not used, as the API's metadata chooses the server (--client-id, --scope are)`);
  }
}

/**
 * `doctor`'s lines for the client secret and the scope, then the redirect URI, or for a grant without a
 * person its settings and sources (`doctorGrant`).
 */
function doctorClientSettings(config: Config, deps: Deps, add: AddCheck): void {
  const from = (key: string) => `from ${config.sources[key] ?? "default"}`;
  const api = config.protectedResource;
  if (!config.clientSecret) add("ok", "config", "client secret: not set (a public client, PKCE only)");
  else if (config.sources.clientSecret === "flag") {
    add(
      "warn",
      "config",
      "client secret: set (from flag, where other local users can see it; use OAUTH_CLIENT_SECRET)",
    );
  } else add("ok", "config", `client secret: set (${from("clientSecret")})`);
  add(
    "ok",
    "config",
    `scope: ${
      config.scope ??
        (api
          ? "as the API says (below)"
          : config.grant
          ? "none asked (the server's default)"
          : "openid profile [offline_access] (default)")
    }${config.scope ? ` (${from("scope")})` : ""}`,
  );
  if (config.grant) doctorGrant(config, deps, add);
  else {
    add(
      "ok",
      "config",
      `redirect URI: ${config.redirectUri ?? "http://127.0.0.1:<any free port>/callback (default)"}`,
    );
  }
}

/**
 * `doctor`'s lines for a grant without a person: the grant, and whether each token source is there
 * (a variable set, a file readable), without reading a token or sending anything.
 */
function doctorGrant(config: Config, deps: Deps, add: AddCheck): void {
  add("ok", "config", `grant: ${config.grant} (from ${config.sources.grant}); no browser, no person`);
  for (const [role, text] of [["subject", config.subjectTokenFrom], ["actor", config.actorTokenFrom]] as const) {
    if (text === undefined) continue;
    const source = parseTokenSource(text, `${role}-token-from`);
    const key = role === "subject" ? "subjectTokenFrom" : "actorTokenFrom";
    const what = `${role} token: from ${text} (from ${config.sources[key]})`;
    const variables = source.kind === "github-actions"
      ? ["ACTIONS_ID_TOKEN_REQUEST_URL", "ACTIONS_ID_TOKEN_REQUEST_TOKEN"]
      : source.kind === "gitlab" || source.kind === "env"
      ? [source.variable]
      : [];
    const unset = variables.filter((name) => !deps.env(name));
    if (unset.length > 0) {
      add("fail", "config", `${what}: ${unset.join(" and ")} ${unset.length > 1 ? "are" : "is"} not set`);
    } else if (source.kind === "kubernetes" || source.kind === "file") {
      let found = false;
      try {
        found = Deno.statSync(source.path).isFile;
      } catch { /* reported below */ }
      add(found ? "ok" : "fail", "config", `${what}: ${found ? "the file is there" : "there is no such file"}`);
    } else add("ok", "config", `${what}${source.kind === "stdin" ? ", read at each grant" : ""}`);
  }
}

/**
 * `doctor`'s trust checks (SECURITY.md 13): who decided where credentials go, what of the `.env` was
 * set aside, and each endpoint given by hand on another host than the issuer's. The `.env`'s note
 * goes to stderr too, as on every other command.
 */
function doctorTrust(config: Config, envFile: string, deps: Deps, add: AddCheck): void {
  const trust = config.trust;
  if (trust?.decidedBy === "own") {
    add("ok", "config", `where you sign in and where credentials go: set by ${trust.by.join(", ")}`);
  } else if (trust?.decidedBy === ".env") {
    add(
      "warn",
      "config",
      `where you sign in and where credentials go: set by ${envFile}, a project file (${trust.by.join(", ")})`,
    );
  }
  for (const line of trust ? trustLines(config, envFile) : []) {
    if (line.startsWith("note: ")) deps.stderr(`${line}\n`);
    else add("warn", "config", line.replace(/^warning: /, ""));
  }
  const home = parseUrl(withoutIssuer(config) ? config.tokenEndpoint ?? "" : config.issuer);
  for (const [key, flag] of MANUAL_ENDPOINTS) {
    const url = config.sources[key] ? parseUrl(config[key] ?? "") : undefined;
    if (!url || !home || url.origin === home.origin) continue;
    add(
      "warn",
      "config",
      `${flag}: on another host (${url.host}) than the ${
        withoutIssuer(config) ? "token endpoint" : "issuer"
      } (${home.host}): what is sent there leaves that server`,
    );
  }
}

/**
 * Where the issuer's own metadata puts an endpoint on another host: normal for some providers (Google's
 * token endpoint is on oauth2.googleapis.com), since the issuer names them itself; one `doctor` line.
 */
function discoveredElsewhere(config: Config, as: Oauth.AuthorizationServer): string | undefined {
  const home = parseUrl(config.issuer);
  const members = [
    ...MANUAL_ENDPOINTS.filter(([key]) => !config.sources[key]).map(([, , member]) => member),
    "pushed_authorization_request_endpoint",
    "jwks_uri",
  ];
  const elsewhere = members.flatMap((member) => {
    const url = parseUrl(String((as as Record<string, unknown>)[member] ?? ""));
    return url && home && url.origin !== home.origin ? [`${member} on ${url.host}`] : [];
  });
  if (elsewhere.length === 0) return undefined;
  return `the issuer's metadata puts ${elsewhere.join(", ")}: normal for some providers, as the issuer names them`;
}

/** `doctor`'s discovery checks (metadata, grants, PKCE, iss, device flow, auth methods, the client, DPoP). */
async function doctorDiscovery(
  config: Config,
  deps: Deps,
  add: AddCheck,
): Promise<{ metadata?: Oauth.AuthorizationServer; deviceSupported: boolean }> {
  let metadata: Oauth.AuthorizationServer | undefined;
  let deviceSupported = false;
  try {
    const issuer = await discover(config, deps);
    const { as, authMethod } = issuer;
    metadata = as;
    deviceSupported = as.device_authorization_endpoint !== undefined;
    if (withoutIssuer(config)) add("ok", "discovery", "none: the endpoints were given by hand");
    else if (as.issuer.includes("{tenantid}")) {
      add("ok", "discovery", `${as.issuer} answered: each ID token's iss must be this with its own tid`);
    } else add("ok", "discovery", `${as.issuer} answered and names itself as the configured issuer`);
    const elsewhere = withoutIssuer(config) ? undefined : discoveredElsewhere(config, as);
    // Normal for a provider the person chose; from an issuer a project file chose, worth a look.
    if (elsewhere) add(config.trust?.decidedBy === ".env" ? "warn" : "ok", "discovery", elsewhere);
    const list = (value: unknown, fallback: string) => Array.isArray(value) ? value.join(", ") : fallback;
    add("ok", "discovery", `grants: ${list(as.grant_types_supported, "not listed (authorization_code assumed)")}`);
    if (Array.isArray(as.code_challenge_methods_supported)) add("ok", "discovery", "PKCE S256 is supported");
    else add("warn", "discovery", "the server does not list PKCE methods; S256 is sent anyway and state is checked");
    if (as.authorization_response_iss_parameter_supported) {
      add("ok", "discovery", "the iss response parameter (RFC 9207) is supported and checked");
    } else add("warn", "discovery", "no iss response parameter (RFC 9207): mix-up defence rests on state alone");
    if (deviceSupported) add("ok", "discovery", "the device flow (RFC 8628) is offered");
    else add("warn", "discovery", "no device flow: where no browser can be opened, a pasted address is the way in");
    add(
      "ok",
      "discovery",
      `token endpoint auth methods: ${
        list(as.token_endpoint_auth_methods_supported, "not listed (client_secret_basic)")
      }; this client uses ${authMethod}`,
    );
    if (!config.grant) await checkClient(issuer, config, deps, add);
    else {
      const offered = !Array.isArray(as.grant_types_supported) ||
        as.grant_types_supported.includes(GRANT_TYPES[config.grant]);
      add(
        offered ? "ok" : "warn",
        "discovery",
        `the ${config.grant} grant is ${offered ? "offered (or not listed)" : "not among the grants the server lists"}`,
      );
    }
    const dpopAlgs = as.dpop_signing_alg_values_supported;
    if (Array.isArray(dpopAlgs)) {
      add(
        "ok",
        "discovery",
        `DPoP (RFC 9449) is offered (${dpopAlgs.join(", ")}); ${config.dpop ? "on" : "off (--dpop)"}`,
      );
    } else if (config.dpop) add("warn", "discovery", "DPoP is on, but the server lists no DPoP algorithms");
  } catch (error) {
    add("fail", "discovery", describeError(error));
  }
  return { metadata, deviceSupported };
}

/**
 * `doctor URL`'s steps for an API whose metadata names the server (`discoverResource`, without signing
 * in): its challenge, its metadata, the server, the scope and the client (given, registered before, or
 * registered now: kept for the sign-in to come). The configuration to check further, or undefined.
 */
async function doctorResource(config: Config, deps: Deps, add: AddCheck): Promise<Config | undefined> {
  try {
    const plan = await discoverResource(config, deps, {
      report: (status, message) => add(status, "resource", message),
    });
    return plan.config;
  } catch (error) {
    add("fail", "resource", describeError(error));
    return undefined;
  }
}

/** `doctor`'s redirect checks: the planned port, whether it is free on each loopback address, localhost. */
async function doctorRedirect(config: Config, add: AddCheck): Promise<void> {
  try {
    const redirect = planRedirect(config.redirectUri);
    if (redirect.port === 0) {
      const example = `http://${redirect.host}:<free port>${redirect.path}`;
      add(
        "ok",
        "redirect",
        config.redirectUri
          ? `"${config.redirectUri}" names no port (or port 0): any free port on ${
            redirect.addresses.join(" and ")
          } is used and sent as ${example} (RFC 8252 §7.3)`
          : `an ephemeral port on 127.0.0.1, sent as ${example} (RFC 8252 §7.3)`,
      );
    }
    for (const address of redirect.port === 0 ? [] : ["127.0.0.1", "::1"]) {
      const needed = redirect.addresses.includes(address);
      try {
        Deno.listen({ hostname: address, port: redirect.port }).close();
        add("ok", "redirect", `port ${redirect.port} is free on ${address}`);
      } catch (error) {
        const busy = error instanceof Deno.errors.AddrInUse;
        add(
          needed ? "fail" : "warn",
          "redirect",
          busy
            ? `port ${redirect.port} is in use on ${address} by another program`
            : `cannot listen on ${address}: ${describeError((error as Error).message)}`,
        );
      }
    }
    const { lookup } = await import("node:dns/promises");
    const resolved = (await lookup("localhost", { all: true })).map((a) => a.address);
    add(resolved.length > 0 ? "ok" : "warn", "redirect", `localhost resolves to ${resolved.join(", ") || "nothing"}`);
  } catch (error) {
    add("warn", "redirect", describeError(error));
  }
}

/** `doctor`'s browser checks: whether a browser can be opened, and which flow login would use. */
function doctorBrowser(config: Config, deps: Deps, deviceSupported: boolean, add: AddCheck): void {
  const browser = browserAvailability({ os: deps.os, env: deps.env, which: deps.which });
  const choice = chooseFlow(config, browser, deviceSupported);
  add(
    browser.ok ? "ok" : "warn",
    "browser",
    browser.ok
      ? `would open with ${browser.opener} (${browser.reason})`
      : `no browser can be opened: ${browser.reason}`,
  );
  add("ok", "browser", `login would use the ${choice.flow} flow${choice.note ? ` (${choice.note})` : ""}`);
  // The start address is in the opener's argv, which other local users can read (see `sameUser`).
  if (deps.os === "linux" && choice.openBrowser) {
    if (deps.which("ss")) {
      add("ok", "browser", "the callback server answers only your own programs (ss tells them apart)");
    } else {
      add(
        "warn",
        "browser",
        "ss (iproute2) is not installed, so another local user who reads the opener's arguments could use the sign-in address first: install iproute2, or use --no-browser",
      );
    }
  }
}

/** `doctor`'s network checks: proxy variables, each host's route (direct or proxied), DENO_CERT, the CA store. */
function doctorNetwork(
  config: Config | undefined,
  metadata: Oauth.AuthorizationServer | undefined,
  deps: Deps,
  add: AddCheck,
): void {
  for (const name of ["HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"]) {
    const value = deps.env(name)?.trim();
    if (!value) continue;
    const url = proxyUrl(value);
    if (url) add("ok", "network", `${name} is set to ${describeProxy(url.href)}`);
    else add("fail", "network", describeError(invalidProxy(name)));
  }
  for (const name of ["NO_PROXY", "no_proxy"]) if (deps.env(name)?.trim()) add("ok", "network", `${name} is set`);
  if (config) {
    // Every host the tool itself talks to (the browser has its own proxy settings), and its route.
    const urls = [config.protectedResource?.url ?? "", config.metadataUrl ?? config.issuer];
    for (
      const name of [
        "token_endpoint",
        "userinfo_endpoint",
        "introspection_endpoint",
        "revocation_endpoint",
        "device_authorization_endpoint",
        "jwks_uri",
      ]
    ) {
      if (typeof metadata?.[name] === "string") urls.push(metadata[name] as string);
    }
    const seen = new Set<string>();
    for (const text of urls) {
      const url = parseUrl(text);
      if (!url || seen.has(`${url.protocol}//${url.host}`)) continue;
      seen.add(`${url.protocol}//${url.host}`);
      const route = routeFor(url, deps.env);
      add(
        "ok",
        "network",
        `${url.protocol}//${url.host}: ${
          route.invalid
            ? `through the proxy in ${route.reason}, which is not a valid URL`
            : route.proxy
            ? `through the proxy ${describeProxy(route.proxy)} (${route.reason})`
            : `direct (${route.reason})`
        }`,
      );
    }
  }
  const certFile = deps.env("DENO_CERT");
  if (certFile) {
    const problem = certificateProblem(certFile);
    add(problem ? "fail" : "ok", "network", problem ?? `DENO_CERT is set to ${certFile}, which holds PEM certificates`);
  }
  const store = deps.env("DENO_TLS_CA_STORE");
  if (store) add("ok", "network", `DENO_TLS_CA_STORE is set to ${store}`);
}

/**
 * `doctor`'s cache checks: the folder is the user's and private (one others can change fails), and each
 * entry is a file the tool would use (the user's own regular file, owner-only).
 */
async function doctorCache(deps: Deps, add: AddCheck): Promise<void> {
  const dir = deps.storage.dir;
  const refused = (error: unknown) => {
    if (!(error instanceof LoginError)) throw error;
    add("fail", "cache", `${error.message}${error.hint ? `: ${error.hint}` : ""}`);
  };
  try {
    const info = await Deno.stat(dir);
    if (info.mode !== null && (info.mode & 0o077) !== 0 && (info.mode & 0o022) === 0) {
      add(
        "warn",
        "cache",
        `${dir} can be read by other users (mode ${(info.mode & 0o777).toString(8)}): chmod 700 ${shellWord(dir)}`,
      );
    } else if (info.mode === null || (info.mode & 0o077) === 0) add("ok", "cache", `${dir} is private`);
    for (const name of await deps.storage.list()) await deps.storage.read(`${name}.json`).catch(refused);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) add("ok", "cache", `${dir} does not exist yet; it will be created 0700`);
    else if (error instanceof LoginError) refused(error);
    else add("warn", "cache", `${dir}: ${describeError(error instanceof Error ? error.message : error)}`);
  }
}

/**
 * One `doctor` line: status, topic, message; on a terminal `width` columns wide the message wraps at
 * word boundaries under itself (a long URL stands alone), so no word is broken. Pure.
 */
function checkLine(check: Check, width?: number): string {
  const head = `${check.status.padEnd(5)} ${check.topic.padEnd(10)} `;
  if (!width || head.length + check.message.length <= width) return `${head}${check.message}\n`;
  const body = wrap(check.message, Math.max(20, width - head.length));
  return `${head}${body.replaceAll("\n", `\n${" ".repeat(head.length)}`)}\n`;
}

/**
 * `doctor`'s keychain checks: where long-lived secrets go (`--token-storage` and its source), whether
 * the platform's keychain answers here (`fail` when it is required), and the cached logins whose
 * secrets are in their file while a keychain is wanted.
 */
async function doctorKeychain(config: Config | undefined, deps: Deps, add: AddCheck): Promise<void> {
  const storage = config?.tokenStorage ?? "auto";
  const from = config?.sources.tokenStorage ?? "default";
  const meaning = storage === "file"
    ? "refresh tokens and keys are kept in the token cache file"
    : storage === "keychain"
    ? "refresh tokens and keys are sealed under a key in the keychain, which must answer"
    : "refresh tokens and keys are sealed under a key in the keychain where one answers, else kept in the file";
  add("ok", "keychain", `token storage: ${storage} (from ${from}): ${meaning}`);
  if (storage === "file") return;
  const problem = await keychainProblem(deps);
  const name = backendFor(deps.os)?.name ?? "the keychain";
  if (!problem) {
    add(
      "ok",
      "keychain",
      `${name} answers here (${deps.os === "windows" ? "" : "without a prompt, "}within ${
        (deps.os === "windows" ? KEYCHAIN_DEADLINE_WINDOWS_MS : KEYCHAIN_DEADLINE_MS) / 1000
      } s)`,
    );
  } else {
    add(
      storage === "keychain" ? "fail" : "warn",
      "keychain",
      `${name} cannot be used here: ${problem.reason} (${problem.remedy})`,
    );
  }
  const inFile: string[] = [];
  for (const entryName of await deps.storage.list().catch(() => [])) {
    const text = await deps.storage.read(`${entryName}.json`).catch(() => undefined);
    const entry = text === undefined ? undefined : parseTokenSet(text);
    if (entry && secretsPlace(entry) === "file") {
      inFile.push(`${displayIssuer(entry.issuer)} (client ${entry.clientId})`);
    }
  }
  if (inFile.length > 0) {
    add(
      "warn",
      "keychain",
      `${plural(inFile.length, "cached login")} keep${
        inFile.length === 1 ? "s" : ""
      } its secrets in the token cache file (${inFile.join(", ")}): ${
        problem
          ? "they move to the keychain at a refresh once it answers"
          : "they move to the keychain at their next refresh"
      }`,
    );
  }
}

/**
 * `doctor`: a self-check for when login does not work. One line per finding, each ok, warn or fail;
 * secrets are never shown. Exit 0 when nothing failed.
 */
async function doctor(
  cli: Cli,
  dotenv: Record<string, string> | undefined,
  deps: Deps,
  envPath = ".env",
): Promise<number> {
  const checks: Check[] = [];
  const add = (status: Check["status"], topic: string, message: string) =>
    checks.push({ status, topic, message: sanitize(message, 400) });
  let config = await doctorConfig(cli, dotenv, deps, envPath, add);
  let metadata: Oauth.AuthorizationServer | undefined;
  if (config?.protectedResource) config = await doctorResource(config, deps, add);
  if (config) {
    const discovered = await doctorDiscovery(config, deps, add);
    metadata = discovered.metadata;
    if (!config.grant) {
      await doctorRedirect(config, add);
      doctorBrowser(config, deps, discovered.deviceSupported, add);
    }
  }
  doctorNetwork(config, metadata, deps, add);
  await doctorCache(deps, add);
  await doctorKeychain(config, deps, add);

  const failed = checks.some((check) => check.status === "fail");
  if (cli.flags.json) deps.stdout(JSON.stringify({ ok: !failed, checks }) + "\n");
  else deps.stdout(checks.map((c) => checkLine(c, deps.stdoutIsTerminal ? deps.columns : undefined)).join(""));
  return failed ? EXIT.failure : EXIT.ok;
}

// ── 28 CLI and entry: parsing argv, usage, main, the real edges ────────────────────────────────────────────────────

interface Cli {
  command: Command;
  /** Whether the command was named (for `--help`). */
  named: boolean;
  flags: FlagValues;
  /** `fetch URL`, `doctor URL`: the one positional argument a command takes. */
  target?: string;
  /** `exec`: the program and its arguments, everything after `--`. */
  program?: string[];
}

const COMMANDS: Record<string, Command> = {
  login: "login",
  token: "token",
  whoami: "whoami",
  status: "whoami",
  logout: "logout",
  doctor: "doctor",
  profiles: "profiles",
  fetch: "fetch",
  exec: "exec",
};

/** The command a name stands for: own names only (`constructor` is not a command). */
const commandNamed = (function commandNamed(name: string): Command | undefined {
  return Object.hasOwn(COMMANDS, name) ? COMMANDS[name] : undefined;
}).bind(undefined);

const COMMON_FLAGS: Flag[] = [
  "issuer",
  "client-id",
  "client-secret",
  "client-auth",
  "scope",
  "param",
  "json",
  "verbose",
  "quiet",
  "env-file",
  "help",
  "version",
  "authorization-endpoint",
  "token-endpoint",
  "device-authorization-endpoint",
  "revocation-endpoint",
  "introspection-endpoint",
  "userinfo-endpoint",
  "user-claim",
  "provider",
  "tenant",
  "profile",
  "token-storage",
  "dpop",
  "client-key",
  "assertion-audience",
  "resource",
  "audience",
  "grant",
  "subject-token-from",
  "subject-token-type",
  "requested-token-type",
  "subject-audience",
  "actor-token-from",
  "actor-token-type",
];

const LOGIN_FLAGS: Flag[] = ["redirect-uri", "port", "timeout", "no-browser", "prompt", "flow", "login-hint", "no-par"];

/** Which flags each command takes, beyond the common ones. */
const COMMAND_FLAGS: Record<Command, Flag[]> = {
  login: [...LOGIN_FLAGS, "save-profile", "acr-values", "max-age"],
  token: [...LOGIN_FLAGS, "min-ttl", "interactive", "format", "method", "url", "acr-values", "max-age"],
  whoami: ["all"],
  logout: ["all"],
  doctor: ["redirect-uri", "port", "flow", "no-browser", "no-par"],
  profiles: [],
  fetch: ["request", "header", "data", "include", "min-ttl", "interactive", "url", "acr-values", "max-age"],
  exec: [...LOGIN_FLAGS, "min-ttl", "interactive", "env-name"],
};

/** Parses argv with `parseArgs` from `node:util`; unknown flags are usage errors. */
async function parseCli(args: string[]): Promise<Cli> {
  // `help` and `help COMMAND`, as git and gh take them, mean --help.
  if (args[0] === "help") args = [...args.slice(1, 2), "--help"];
  // `exec … -- COMMAND ARGS…`: what follows `--` is the program's, never read as flags.
  const dashes = args.indexOf("--");
  const program = dashes < 0 ? undefined : args.slice(dashes + 1);
  if (dashes >= 0) args = args.slice(0, dashes);
  // A negative number after a numeric flag is its value (refused later with the flag's own rule), not a flag.
  args = args.flatMap((arg, i) =>
    /^--(timeout|min-ttl|port)$/.test(arg) && /^-\d/.test(args[i + 1] ?? "") ? [`${arg}=${args[i + 1]}`] : [arg]
  ).filter((arg, i, all) => !(/^-\d/.test(arg) && /^--(timeout|min-ttl|port)=-/.test(all[i - 1] ?? "")));
  const { parseArgs } = await import("node:util");
  let parsed;
  try {
    parsed = parseArgs({ args, options: FLAGS, allowPositionals: true, strict: true });
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    // node:util's own sentences for a flag without its value: said in ours, with what to do.
    const valueless = message.match(/^Option '(-\w, )?(--[a-z-]+)(?: <value>)?' argument (missing|is ambiguous)/);
    if (valueless) {
      const flag = valueless[2];
      const next = args[args.indexOf(flag) + 1];
      throw new LoginError(
        "usage",
        valueless[3] === "missing"
          ? `The flag "${flag}" needs a value`
          : `The flag "${flag}" needs a value, and "${sanitize(next ?? "", 40)}" looks like a flag`,
        {
          hint: valueless[3] === "missing"
            ? `give it after the flag, e.g. ${flag} VALUE (run with --help to see the flags)`
            : `to give a value that starts with "-", write ${flag}=${next === undefined ? "VALUE" : shellWord(next)}`,
        },
      );
    }
    const unknown = message.match(/Unknown option '([^']+)'/);
    const near = unknown?.[1].startsWith("--") ? closest(unknown[1].slice(2), Object.keys(FLAGS)) : undefined;
    throw new LoginError(
      "usage",
      unknown
        ? `Unknown flag "${sanitize(unknown[1])}"${near ? `: did you mean "--${near}"?` : ""}`
        : sanitize(message.split(". ")[0]),
      { hint: "run with --help to see the flags" },
    );
  }
  const [name = "login", ...rest] = parsed.positionals;
  const command = commandNamed(name);
  if (!command) {
    const near = closest(name, Object.keys(COMMANDS));
    throw new LoginError("usage", `Unknown command "${sanitize(name)}"${near ? `: did you mean "${near}"?` : ""}`, {
      hint: "run with --help to see the commands",
    });
  }
  const positional = command === "fetch" || command === "doctor" ? 1 : 0; // `fetch URL`, `doctor [URL]`
  if (rest.length > positional) {
    throw new LoginError("usage", `Unexpected argument "${sanitize(rest[positional])}"`, {
      hint: command === "exec"
        ? `put -- before the program: "oauth-login exec -- ${shellWord(sanitize(rest[0]))} ..."`
        : `run "oauth-login ${command} --help" to see the usage`,
    });
  }
  if (program !== undefined && command !== "exec") {
    throw new LoginError("usage", `Unexpected argument "--"`, {
      hint: `only "exec" takes a program after --; run "oauth-login ${command} --help" to see the usage`,
    });
  }
  const flags = parsed.values as FlagValues;
  const allowed = new Set([...COMMON_FLAGS, ...COMMAND_FLAGS[command]]);
  const misplaced = (Object.keys(flags) as Flag[]).find((flag) => !allowed.has(flag));
  if (misplaced) {
    throw new LoginError("usage", `The flag "--${misplaced}" does not apply to "${command}"`, {
      hint: `run "oauth-login ${command} --help" to see its flags`,
    });
  }
  const target = positional ? rest[0] : undefined;
  return { command, named: parsed.positionals.length > 0, flags, target, ...(program ? { program } : {}) };
}

/**
 * The everyday parser: a command (or none, for `login`) followed by long flags, read from the same
 * `FLAGS` table. node:util costs about 10 ms to load, more than the whole cached-token path. Anything it
 * does not fully understand (a short flag, a flag the command does not take, a value that looks like a
 * flag, `--`) returns undefined, and `parseCli` (node:util's parseArgs) takes over, errors included.
 */
const quickParse: (args: string[]) => Cli | undefined = (function quickParse(args: string[]): Cli | undefined {
  const named = args.length > 0 && !args[0].startsWith("-");
  const command = named ? commandNamed(args[0]) : "login";
  if (!command) return undefined;
  const allowed = new Set<string>([...COMMON_FLAGS, ...COMMAND_FLAGS[command]]);
  const flags: Record<string, string | boolean | string[]> = {};
  let target: string | undefined;
  for (let i = named ? 1 : 0; i < args.length; i++) {
    if ((command === "fetch" || command === "doctor") && target === undefined && !args[i].startsWith("-")) {
      target = args[i]; // `fetch URL`, `doctor URL`
      continue;
    }
    const match = args[i].match(/^--([a-z-]+)(?:=([\s\S]*))?$/);
    const name = match?.[1] as Flag | undefined;
    if (!name || !allowed.has(name)) return undefined;
    const spec = FLAGS[name] as { type: string; multiple?: boolean };
    let value: string | boolean;
    if (spec.type === "boolean") {
      if (match![2] !== undefined) return undefined;
      value = true;
    } else {
      value = match![2] ?? args[++i];
      if (value === undefined || value.startsWith("-")) return undefined;
    }
    if (spec.multiple) flags[name] = [...(flags[name] as string[] ?? []), value as string];
    else flags[name] = value;
  }
  return { command, named, flags: flags as FlagValues, target };
}).bind(undefined);

const CONFIG_FLAGS_HELP = `Settings (a flag wins over the environment, the environment over .env, and
.env over a profile; but a project's .env never changes where you sign in
when your flags, environment or profile name the server, and never gets your
own secret or key; "oauth-login doctor" shows who decided):
  --issuer URL          the issuer, or its full metadata URL   (OAUTH_ISSUER)
  --client-id ID        the OAuth client id                 (OAUTH_CLIENT_ID)
  --client-secret S     a confidential client's secret (OAUTH_CLIENT_SECRET;
                        as a flag, other local users can see it in ps)
  --client-auth METHOD  none, client_secret_basic or client_secret_post
                        (OAUTH_CLIENT_AUTH; default: from the metadata;
                        a refresh reuses the login's)
  --scope "A B"         the scopes to ask for                   (OAUTH_SCOPE)
                        (default: openid profile [offline_access])
  --param KEY=VALUE     an extra parameter (resource, audience, login_hint,
                        acr_values, ...); repeatable
  --profile NAME        use a profile of the config file (below flags, the
                        environment and .env)                 (OAUTH_PROFILE)
  --env-file PATH       read settings from this file instead of ./.env
  --token-storage WHERE where refresh tokens and keys are kept: auto (the
                        keychain where one answers, else the cache file,
                        with a warning), keychain, or file
                        (OAUTH_TOKEN_STORAGE or a profile; never from .env)
  --json                output JSON on stdout
  -v, --verbose         trace each exchange with the server (secrets
                        redacted), the cause of each error, stack traces
  -q, --quiet           no waiting line or countdown, no "Logged in as" line
  -h, --help            show help

Providers, and servers without discovery:
  --provider NAME       a preset: github, gitlab, google, entra, okta, auth0,
                        keycloak, cognito, salesforce, dropbox or spotify
                        (else inferred from the issuer)      (OAUTH_PROVIDER)
  --tenant TENANT       entra: a tenant GUID or domain, or common (default),
                        organizations or consumers             (OAUTH_TENANT)
  --authorization-endpoint URL    --token-endpoint URL
  --device-authorization-endpoint URL    --revocation-endpoint URL
  --introspection-endpoint URL    --userinfo-endpoint URL
                        endpoints by hand (OAUTH_TOKEN_ENDPOINT, ...); they
                        override discovery, and without --issuer none happens;
                        a login with them is cached apart from the normal one
  --user-claim NAME     the UserInfo member naming the user (OAUTH_USER_CLAIM)

DPoP, client keys and resources:
  --dpop                DPoP-bound tokens (RFC 9449)             OAUTH_DPOP=1
  --client-auth private_key_jwt|client_secret_jwt   JWT client authentication
  --client-key FILE     its key: PEM PKCS#8 or JWK           OAUTH_CLIENT_KEY
  --assertion-audience issuer|token-endpoint   the aud of client assertions
  --resource URI        the API a token is for (RFC 8707); repeatable. One
                        --resource URL and no issuer or no client id: the
                        API's metadata says where to sign in (RFC 9728)
  --audience VALUE      the audience parameter (Auth0 and others)

Logins without a person (no browser; token runs the grant again when due):
  --grant GRANT         client_credentials, jwt-bearer (RFC 7523) or
                        token-exchange (RFC 8693)              (OAUTH_GRANT)
  --subject-token-from SOURCE   the subject token or assertion, read afresh
                        at each grant: github-actions, gitlab:VAR,
                        kubernetes[:PATH], file:PATH, env:NAME or - (stdin)
                        (OAUTH_SUBJECT_TOKEN_FROM; never from .env)
  --subject-audience A  a GitHub Actions token's audience (default: the
                        issuer)   (OAUTH_SUBJECT_AUDIENCE; never from .env)
  --subject-token-type T, --requested-token-type T   RFC 8693 token types:
                        jwt (default), id_token, access_token or a URI
  --actor-token-from SOURCE, --actor-token-type T   the actor (RFC 8693)`;

const LOGIN_FLAGS_HELP = `  --redirect-uri URI    a fixed loopback redirect URI registered with the
                        server (OAUTH_REDIRECT_URI; default:
                        http://127.0.0.1:<any free port>/callback)
  --port N              listen on this fixed port (127.0.0.1 and /callback
                        unless --redirect-uri says otherwise)
  --timeout SECONDS     how long to wait for the browser, or for the device
                        flow's approval (default: 300)
  --no-browser          print the address to open instead of opening it
  --prompt VALUE        the OpenID prompt parameter, e.g. consent (some
                        servers need it to issue a refresh token)
  --flow FLOW           auto (default), browser or device: auto uses the
                        browser where one can be opened, else the device
                        flow (RFC 8628) where the server offers it, else an
                        address to open elsewhere and paste back
  --no-par              send the authorization request in the browser's URL
                        even where the server offers pushed authorization
                        requests (RFC 9126; used by default)
  --login-hint HINT     the OpenID login_hint: which account to offer`;

const USAGE: Record<Command | "main", string> = {
  main: `oauth-login ${VERSION}: log in to an OAuth 2.0 / OpenID Connect server
from the terminal

Usage: oauth-login [COMMAND] [flags]

Commands:
  login            sign in with the browser and keep the tokens (the default)
  token            print a valid access token, refreshing or signing in
  whoami, status   show who is logged in, the scopes and the token's expiry
  logout           revoke the tokens at the server and delete them here
  doctor           check the settings, the issuer, the client id and
                   redirect URI, the port, the browser and the cache
  profiles         list the config file's profiles and who is logged in
  fetch URL        call an API with the cached token (Bearer or DPoP); with
                   nothing configured, sign in where the API says
  exec -- CMD ...  run a program with a valid token in OAUTH_ACCESS_TOKEN

${CONFIG_FLAGS_HELP}

  -V, --version         show the version

Login flags:
${LOGIN_FLAGS_HELP}

Run "oauth-login COMMAND --help" for a command's own flags.

Environment: OAUTH_LOGIN_CACHE (the token cache directory), BROWSER (the
browser command), NO_COLOR, DENO_CERT (a CA file for a private CA),
OAUTH_LOGIN_CONFIG (the profiles' file; default:
~/.config/oauth-login/config.toml, or under $XDG_CONFIG_HOME).
Proxies: HTTPS_PROXY, HTTP_PROXY, ALL_PROXY, NO_PROXY (never for loopback).

Exit codes: 0 ok, 1 failure, 2 usage or configuration, 3 denied or cancelled,
            4 login required, 5 timed out, 130 interrupted; exec: the
            program's, 126 cannot run it, 127 no such program.

Example:
  oauth-login --issuer https://dev-123456.okta.com/oauth2/default \\
    --client-id 0oa...
  oauth-login fetch https://api.example.com/me
  oauth-login token --format headers --url https://api.example.com/me |
    curl -H @- https://api.example.com/me
(the token stays off command lines, where other local users could read it)
`,
  login: `Usage: oauth-login login [flags]

Signs in with the system browser over a loopback redirect (PKCE, state, iss
checked), shows who logged in on stderr, and caches the tokens for
"oauth-login token". --json prints the identity and the tokens as one JSON
object on stdout.

${CONFIG_FLAGS_HELP}

Login flags:
${LOGIN_FLAGS_HELP}
  --save-profile NAME   after the login, save its settings (never a secret) as
                        a profile of the config file, and cache under that name
`,
  token: `Usage: oauth-login token [flags]

Prints a valid access token and a newline on stdout, and nothing else. A
token that expires within --min-ttl is refreshed first (one process at a
time); with no usable token it signs in, but only when a person can answer
(a terminal) or --interactive is given; otherwise it exits 4 (login
required).

  --min-ttl SECONDS     refresh when the token expires within this long
                        (default: 60), or within half its lifetime if less
  --interactive         sign in when needed even without a terminal
  --format FORMAT       text (default), json ({access_token, token_type,
                        expires_at, scope}), or exec-credential (for kubectl:
                        v1 or v1beta1, as KUBERNETES_EXEC_INFO asks; no
                        sign-in when it says spec.interactive is false)
                        or headers (Authorization and DPoP lines for curl -H @-)
  --method M --url URL  the request a headers-format DPoP proof is for
  --acr-values "A B"    sign in again unless the cached sign-in had one of
                        these authentication context classes (RFC 9470)
  --max-age SECONDS     sign in again unless the cached sign-in is at most
                        this old

${CONFIG_FLAGS_HELP}

Login flags:
${LOGIN_FLAGS_HELP}
`,
  whoami: `Usage: oauth-login whoami [flags]     (alias: status)

Shows the issuer, the user, the scopes and when the access token expires.
Exits 0 when logged in (a valid or refreshable token) and 4 when not (with
--json, an object with "logged_in": false). Makes no network request.

  --all                 list every cached login (profile, issuer, client, user)

${CONFIG_FLAGS_HELP}
`,
  doctor: `Usage: oauth-login doctor [URL] [flags]

Checks, one line each (ok, warn or fail): the settings and where each came
from, the issuer's metadata and what it supports, whether the server accepts
the client id and the redirect URI, the redirect port on 127.0.0.1 and ::1
and how localhost resolves, the browser opener and display, proxy and CA
settings, the token cache's permissions and whether the keychain answers.
Secrets are never shown. Exits 0 when nothing failed; --json for bug reports.
With an API's URL and no issuer or client id: each step of finding where to
sign in for it (its challenge, its metadata, its server, the scope, the
client: given, registered before or registered now), without signing in.

${CONFIG_FLAGS_HELP}
  --redirect-uri URI, --port N, --flow FLOW, --no-browser, --no-par
                        as for login
`,
  fetch: `Usage: oauth-login fetch [-X METHOD] [-H "Name: value"]... [-d DATA] [-i] URL

Sends one request to an API with the cached access token and prints the response
body on stdout. A DPoP-bound token (login --dpop) goes with a fresh DPoP proof.
A token that expires within --min-ttl is refreshed first; a 401 "invalid_token"
refreshes it once and sends once more; a DPoP nonce challenge is answered once.
Redirects are not followed. Exits 0 for a 2xx answer, else 1 (body printed).

With no issuer or no client id configured, the API says where to sign in: the
request goes without a token, and its 401 leads to its metadata (RFC 9728),
the server it names, a client (--client-id, or one this tool registers there,
RFC 7591) and a sign-in for it, kept for the next calls. A 403
"insufficient_scope" or a 401 "insufficient_user_authentication" signs in
again once for what it asks (RFC 9470), then sends once more.

  -X, --request METHOD  the method (default: GET, or POST with -d)
  -H, --header "N: V"   a request header; repeatable (not Authorization or DPoP)
  -d, --data DATA       the body: text, @FILE or @- (stdin); JSON when it starts
                        with { or [, else form-encoded, unless -H sets the type
  -i, --include         print the status line and headers on stderr
  --min-ttl SECONDS     refresh when the token expires within this long
  --interactive         sign in when needed even without a terminal
  --acr-values "A B", --max-age SECONDS
                        sign in again unless the cached sign-in meets them

${CONFIG_FLAGS_HELP}
`,
  exec: `Usage: oauth-login exec [flags] -- COMMAND [ARGS...]

Runs COMMAND (never through a shell) with a valid access token in its
environment, as OAUTH_ACCESS_TOKEN: renewed first as "oauth-login token" would,
and never on a command line. The tool exits with the program's exit code
(126: it cannot be run, 127: no such program); SIGINT, SIGTERM and SIGHUP are
passed on to it. A DPoP-bound token is refused: a program cannot make proofs.

  --env-name NAME       put the token in NAME instead of OAUTH_ACCESS_TOKEN
  --scope "A B"         narrower than the cached login's: the program gets a
                        token narrowed to it by a refresh (RFC 6749 §6), or
                        nothing, when the server does not narrow it
  --min-ttl SECONDS     renew when the token expires within this long
  --interactive         sign in when needed even without a terminal

${CONFIG_FLAGS_HELP}

Login flags:
${LOGIN_FLAGS_HELP}
`,
  logout: `Usage: oauth-login logout [--all] [flags]

Revokes the refresh and access tokens at the server (RFC 7009) where it has
a revocation endpoint, then deletes the cached entry and its keychain item,
even when the revocation fails (which is reported, exit 1).

  --all                 log out of every cached entry, and remove the keychain
                        items whose cached login is gone

${CONFIG_FLAGS_HELP}
`,
  profiles: `Usage: oauth-login profiles [--json]

Lists the profiles of the config file ($OAUTH_LOGIN_CONFIG, else
config.toml in $XDG_CONFIG_HOME/oauth-login or ~/.config/oauth-login) with
each one's issuer, who is logged in with it and the token's state, from the
cache (no network). * marks the profile a command run here would use
(--profile, OAUTH_PROFILE from the environment or .env, else default_profile).

  default_profile = "work"
  [work]
  issuer = "https://example.okta.com/oauth2/default"
  client_id = "0oa..."
  login_hint = "alice@example.com"
  [work.params]
  audience = "https://api.example.com"

Keys are the flags' names in snake_case. Secrets never go in the file.

  --json                one JSON object on stdout, for scripts
  -h, --help            show help
`,
};

/** The commands that run on a resolved configuration (`doctor` reports configuration problems itself). */
const COMMAND_RUNNERS: Record<
  Exclude<Command, "doctor" | "profiles">,
  (config: Config, deps: Deps) => Promise<void | number>
> = {
  login: loginCommand,
  token: tokenCommand,
  whoami: whoamiCommand,
  logout: logoutCommand,
  fetch: fetchCommand,
  exec: execCommand,
};

/** Runs the CLI and returns the exit code; every error is caught here, once. */
export async function main(args: string[], deps: Deps): Promise<number> {
  let verbose = args.includes("--verbose") || args.includes("-v");
  // Yield once, so that what follows no longer runs under the module's top-level frame: the first
  // Error created with that frame on the stack (the missing .env below, on the hot path) makes V8
  // re-parse the whole module for source positions, about 2 ms.
  await null;
  try {
    // The everyday command lines are read without node:util (see quickParse), so that a cached token
    // costs no more than reading one file; anything unusual goes through parseArgs.
    const cli = quickParse(args) ?? await parseCli(args);
    verbose = cli.flags.verbose ?? false;
    if (cli.flags.help) {
      deps.stdout(USAGE[cli.named ? cli.command : "main"]);
      return EXIT.ok;
    }
    if (cli.flags.version) {
      deps.stdout(`oauth-login ${VERSION}\n`);
      return EXIT.ok;
    }
    const envFile = cli.flags["env-file"];
    const initCwd = deps.env("INIT_CWD");
    const envPath = envFilePath(envFile, initCwd, initCwd ? deps.cwd?.() : undefined);
    const dotenv = await deps.readEnvFile(envPath);
    if (envFile && !dotenv) {
      throw new LoginError("config", `Cannot read the env file "${sanitize(envPath)}"`, {
        hint: "check the path given to --env-file",
      });
    }
    if (cli.flags.verbose) {
      deps.stderr(
        `trace: ${dotenv ? `read ${plural(Object.keys(dotenv).length, "setting")} from` : "no settings file at"} ${
          describeEnvPath(envPath, deps.cwd)
        }\n`,
      );
    }
    if (dotenv && cli.command !== "doctor") {
      for (const warning of dotenvWarnings(dotenv)) say(deps, `warning: ${warning}`); // doctor lists them
    }
    if (cli.command === "doctor") return await doctor(cli, dotenv, deps, envPath);
    if (cli.command === "profiles") {
      await profilesCommand(cli, dotenv, deps);
      return EXIT.ok;
    }
    // No I/O here unless a profile is named or nothing else sets the issuer (see selectProfile).
    const profile = await selectProfile(cli, dotenv, deps);
    const shown = dotenv ? describeEnvPath(envPath, deps.cwd) : undefined;
    const resolved = resolveConfig(cli, deps.env, dotenv, profile, { presetBase: deps.presetBase, envFile: shown });
    const config = withProjectKey(resolved, envPath, deps, shown ?? '".env"');
    const saving = cli.flags["save-profile"];
    if (shown) announceTrust(config, deps, shown, saving);
    if (cli.flags["client-secret"] !== undefined) {
      say(
        deps,
        `warning: --client-secret is visible to other local users in the process list; set ${ENV_VARS.clientSecret} instead`,
      );
    }
    const code = await COMMAND_RUNNERS[cli.command as Exclude<Command, "doctor" | "profiles">](config, deps);
    if (saving !== undefined && profile) {
      const { settings, withheld } = profileSettings(cli.flags, deps.env, usableDotenv(dotenv, config), profile);
      const replaced = await saveProfile(profile.path, saving, settings);
      say(
        deps,
        `Saved the profile "${saving}" in ${sanitize(profile.path)}${
          replaced ? ", replacing the settings it had" : ""
        }; use it with --profile ${shellWord(saving)}`,
      );
      if (withheld.length > 0) say(deps, withheldNote(withheld));
    }
    return code ?? EXIT.ok;
  } catch (error) {
    return report(error, deps, verbose);
  } finally {
    closeHttpClients();
  }
}

/** Whether `command` is an executable file: the path itself when it names one, else in a directory of `$PATH`. */
function onPath(command: string, env: (name: string) => string | undefined): boolean {
  const windows = Deno.build.os === "windows";
  const executable = (path: string) => {
    try {
      const info = Deno.statSync(path);
      return info.isFile && (info.mode === null || (info.mode & 0o111) !== 0);
    } catch {
      return false;
    }
  };
  if (command.includes("/") || (windows && command.includes("\\"))) return executable(command);
  return (env("PATH") ?? "").split(windows ? ";" : ":").some((dir) => executable(`${dir}/${command}`));
}

/** Lines typed on stdin. */
async function* stdinLines(): AsyncIterable<string> {
  let buffer = "";
  for await (const chunk of Deno.stdin.readable.pipeThrough(new TextDecoderStream())) {
    buffer += chunk;
    const lines = buffer.split(/\r?\n/);
    buffer = lines.pop() ?? "";
    yield* lines;
  }
}

/**
 * Whether typing `oauth-login` runs this very module: the first `oauth-login` on `PATH` is the script
 * `deno install -g -n oauth-login login.ts` writes (`exec deno run … 'file:///…/login.ts' "$@"`, or
 * `oauth-login.cmd` on Windows), naming `main`. Then hints can say `oauth-login`, and work when
 * typed, however this run was started. The shim sets no variable and leaves no other trace, so it is
 * read (a few hundred bytes; only when a hint is made, never on the cached-token path).
 */
function installedCommand(main: string, env: (name: string) => string | undefined): boolean {
  const windows = Deno.build.os === "windows";
  for (const dir of (env("PATH") ?? "").split(windows ? ";" : ":")) {
    for (const name of windows ? ["oauth-login.cmd", "oauth-login.exe"] : ["oauth-login"]) {
      const path = `${dir}/${name}`;
      try {
        const info = Deno.statSync(path);
        if (!info.isFile) continue;
        // The first one found is what the shell runs: this module's shim, or something else.
        return info.size < 4096 && Deno.readTextFileSync(path).includes(main);
      } catch { /* not there, or not readable: look further */ }
    }
  }
  return false;
}

/** How the person ran this tool: a compiled binary, `deno task`, or `deno run` on the module. */
function invocation(env: (name: string) => string | undefined): string {
  if (Deno.build.standalone) return Deno.execPath().split(/[\\/]/).pop()?.replace(/\.exe$/i, "") || "oauth-login";
  if (env("INIT_CWD") && env("npm_config_user_agent")?.startsWith("deno/")) return "deno task";
  const main = Deno.mainModule;
  if (!main.startsWith("file:")) return `deno run -A ${main}`;
  if (installedCommand(main, env)) return "oauth-login";
  // The module as the person can name it from where they stand: relative below the working directory, else whole.
  const file = decodeURIComponent(new URL(main).pathname);
  let here: string | undefined;
  try {
    here = Deno.cwd();
  } catch { /* no read permission: the whole path */ }
  return `deno run -A ${here && file.startsWith(`${here}/`) ? file.slice(here.length + 1) : file}`;
}

/** The real edges, kept thin. */
export function realDeps(): Deps {
  const controller = new AbortController();
  let listening = false;
  const encoder = new TextEncoder();
  let columns: number | undefined;
  let invokedAs: string | undefined;
  const writeBytes = (stream: typeof Deno.stdout) => (bytes: Uint8Array) => {
    for (let written = 0; written < bytes.length;) written += stream.writeSync(bytes.subarray(written));
  };
  const write = (stream: typeof Deno.stdout) => (text: string) => writeBytes(stream)(encoder.encode(text));
  const env = (name: string) => Deno.env.get(name);
  const interactive = Deno.stdin.isTerminal() && Deno.stderr.isTerminal();
  // Read on first use, not here: `--help` and `--version` need no permission at all.
  let storage: Storage | undefined;
  return {
    fetch: globalThis.fetch,
    openUrl: openWithSystemBrowser,
    now: () => Date.now(),
    env,
    readEnvFile,
    stdout: write(Deno.stdout),
    stdoutBytes: writeBytes(Deno.stdout),
    get stdoutIsTerminal() {
      return Deno.stdout.isTerminal();
    },
    stderr: write(Deno.stderr),
    canPrompt: interactive,
    get storage() {
      const dir = storage ? undefined : cacheDir(env, Deno.build.os);
      return storage ??= dir ? fileStorage(dir) : missingStorage();
    },
    set storage(value) {
      storage = value;
    },
    signal: controller.signal,
    // Ctrl-C is caught only once a command waits or makes a request: the cached-token path never does.
    catchInterrupt: () => {
      if (!listening) Deno.addSignalListener("SIGINT", () => controller.abort());
      listening = true;
    },
    os: Deno.build.os,
    which: (command) => onPath(command, env),
    sleep: (ms) => delay(ms).done,
    readLines: interactive ? () => stdinLines() : undefined,
    get animate() {
      return Deno.stderr.isTerminal() && !env("NO_COLOR");
    },
    get stderrIsTerminal() {
      return Deno.stderr.isTerminal();
    },
    cwd: () => Deno.cwd(),
    timer: realTimer,
    // Worked out when first needed, so that the cached-token path never asks the terminal.
    get columns() {
      if (columns === undefined) {
        columns = 80; // when the width cannot be known
        try {
          if (Deno.stderr.isTerminal()) columns = Deno.consoleSize().columns || 80;
        } catch { /* not a console */ }
      }
      return columns;
    },
    get invokedAs() {
      return invokedAs ??= invocation(env);
    },
    readStdin: async () => new Uint8Array(await new Response(Deno.stdin.readable).arrayBuffer()),
    runTool,
    socketOwners: Deno.build.os === "linux" ? loopbackSocketOwners : undefined,
    runProgram,
  };
}

/** The signals `exec` passes on to its program (Windows has only Ctrl-C to pass). */
const FORWARDED_SIGNALS: Deno.Signal[] = Deno.build.os === "windows" ? ["SIGINT"] : ["SIGINT", "SIGTERM", "SIGHUP"];

/** `Deps.runProgram`: the program with the tool's stdio and the environment plus `env`; signals passed on. */
async function runProgram(
  command: string,
  options: { args: string[]; env: Record<string, string>; unset?: string[] },
): Promise<number> {
  let child: Deno.ChildProcess | undefined;
  const early: Deno.Signal[] = [];
  // Listening first: from here a SIGTERM or SIGHUP no longer ends this process, and no signal that comes
  // as the program starts is lost; each goes on to the program.
  const forward = FORWARDED_SIGNALS.map((signal) => {
    const pass = () => {
      if (!child) return void early.push(signal);
      try {
        child.kill(signal);
      } catch { /* it has just ended */ }
    };
    Deno.addSignalListener(signal, pass);
    return () => Deno.removeSignalListener(signal, pass);
  });
  try {
    const env = { ...Deno.env.toObject(), ...options.env };
    for (const name of options.unset ?? []) delete env[name];
    child = new Deno.Command(command, {
      args: options.args,
      env,
      clearEnv: true,
      stdin: "inherit",
      stdout: "inherit",
      stderr: "inherit",
    }).spawn();
    for (const signal of early) child.kill(signal);
    return (await child.status).code;
  } finally {
    for (const stop of forward) stop();
  }
}

/**
 * Internals for this project's own tests, benchmark and demo: not part of the public API, and they
 * may change in any release.
 */
export const testing = {
  resolveConfig,
  socketOwners,
  loopbackSocketOwners,
  checkProjectMetadata,
  profileFlagNames,
  itemAccount,
  itemFile,
  openSealed,
  runTool,
  sealSecrets,
  sealedSecret,
  MAX_LIFETIME_S,
  browserAvailability,
  cacheKey,
  chooseServer,
  closest,
  dpopAlgorithm,
  configPath,
  envFilePath,
  inferProvider,
  issuerDifference,
  legacyCacheKeys,
  misspeltKeys,
  normaliseAnswer,
  openWithSystemBrowser,
  openerCommand,
  page,
  parseCli,
  parseDotenv,
  parseExecInfo,
  parseIssuer,
  planRedirect,
  quickParse,
  registrationName,
  replaceProfileText,
  resourceEntryName,
  resourceMismatch,
  routeFor,
  sanitize,
  wrap,
};

if (import.meta.main) {
  const code = await main(Deno.args, realDeps());
  // The quick paths (a cached token, --help) exit at once. A run that did network work (it loaded the
  // OAuth library) ends by returning instead, which lets Deno store V8's code cache for this module
  // (Deno.exit skips that), so that later runs do not parse it again: about 2.5 ms off every cached
  // `token`. Should anything (a hung browser opener, a read of stdin) keep it alive, the timer ends it.
  if (oauthModule === undefined) Deno.exit(code);
  Deno.exitCode = code;
  Deno.unrefTimer(setTimeout(() => Deno.exit(code), 0));
}
