/**
 * `deno task bench`: how long `login.ts` takes as a whole process, next to `deno run` of an empty script
 * (the floor) and of `bench/same_work.ts`, which does the cached `token`'s work the minimal way (reads one
 * JSON file, prints one line); the cached `token` line also shows its ratio to that same-work script.
 *
 * Every case is a fresh `deno run` process, run 3 times to warm up and then 25 times for the numbers
 * (`--runs N`, `--warmup N`). The rounds are interleaved, in a new random order each round, so that load
 * from other programs spreads over all cases alike. For each case it prints the median and the p10–p90
 * range of the wall time, the CPU time (user + sys) and the peak memory (max RSS), and each median as a
 * ratio to the floor's. `--markdown` prints the same as Markdown (for the README), `--json` the raw numbers.
 *
 * Then (`--concurrent N`, default 3) N rounds of two batches of 64 `token` processes started at once by one
 * bash, timed as a whole: against an expired entry (exactly one refresh request, every process prints the
 * token it brought) and against the cached entry, for comparison.
 *
 * How a run is measured (Linux): the command runs under
 *
 *     /usr/bin/time -f '%e %U %S %M' -o FILE bash -c 't0=$EPOCHREALTIME; "$@"; t1=$EPOCHREALTIME; times' …
 *
 * - wall time: bash's `$EPOCHREALTIME` (µs) just before and after the command, so the start-up of the
 *   wrappers is not counted;
 * - CPU time: the second line of bash's `times` (getrusage of the children: the command and every
 *   descendant it waited for, in ms). GNU time's own `%U` and `%S` are cut to 10 ms steps, too coarse for a
 *   process that uses ~30 ms;
 * - peak RSS: GNU time's `%M` (KiB): the largest resident set of any one process in the tree (bash is
 *   ~4 MiB, far below deno), not their sum.
 *
 * Without bash the CPU time comes from GNU time (10 ms steps) and the wall time from this process's clock;
 * without GNU time there is no peak RSS (and no CPU time without bash either). The output says which.
 *
 * The mock issuer runs inside this process, so its work counts in no case. The environment of the measured
 * processes is a fixed, small one (PATH, HOME, DENO_DIR, XDG_CACHE_HOME, TMPDIR, NO_COLOR=1 and
 * DENO_NO_UPDATE_CHECK=1, plus the case's own variables), and they run in the repository's root as
 * `deno task login` would.
 *
 * @module
 */
import { fileStorage } from "../login.ts";
import { PUBLIC_CLIENT, type ServedMock, serveMockIssuer } from "../tests/mock_issuer.ts";

// ── Settings ────────────────────────────────────────────────────────────────────────────────────

const ROOT = decodeURIComponent(new URL("../", import.meta.url).pathname).replace(/\/$/, "");
/** The flags of `deno task login`: every case, the floor included, runs with exactly these. */
const PERMISSIONS = ["--allow-net", "--allow-env", "--allow-read", "--allow-write", "--allow-run"];
const GNU_TIME = "/usr/bin/time";
/** A run that takes longer than this is killed (with its descendants) and the benchmark fails. */
const RUN_TIMEOUT_MS = 60_000;
/** Variables passed through to the measured processes; everything else is left out. */
const PASSED_ENV = ["PATH", "HOME", "USER", "DENO_DIR", "XDG_CACHE_HOME", "TMPDIR"];

const USAGE = `Usage: deno task bench [--runs N] [--warmup N] [--json | --markdown]

Runs login.ts as whole processes (--help, token from the cache, token with a refresh, a browser login
against the mock issuer) next to \`deno run\` of an empty script and of a script that does the cached
token's work the minimal way (read one JSON file, print one line), and prints the median and p10–p90 of
wall time, CPU time and peak RSS, with each median as a ratio to the empty script's (and, for the cached
token, to the same-work script's); then the wall time of 64 token processes started at once (one refresh
among them), next to 64 cached ones.

  --runs N     measured runs per case (default 25)
  --warmup N   warm-up runs per case, not counted (default 3)
  --concurrent N  rounds of two batches of 64 token processes started at once
               (expired entry, cached), timed whole (default 3; 0: none; bash)
  --json       print the raw numbers as JSON
  --markdown   print the table as Markdown
  -h, --help   show this help
`;

interface Options {
  runs: number;
  warmup: number;
  format: "text" | "json" | "markdown";
  /** Batches of `BATCH_SIZE` token processes at once, of each kind (0: none). */
  concurrent: number;
}

function parseOptions(args: string[]): Options {
  const options: Options = { runs: 25, warmup: 3, format: "text", concurrent: 3 };
  const count = (name: string, value: string | undefined, min: number): number => {
    const n = Number(value);
    if (value === undefined || !Number.isInteger(n) || n < min) {
      throw new UsageError(`${name} needs a whole number of at least ${min}`);
    }
    return n;
  };
  for (let i = 0; i < args.length; i++) {
    const [flag, inline] = args[i].startsWith("--") && args[i].includes("=")
      ? [args[i].slice(0, args[i].indexOf("=")), args[i].slice(args[i].indexOf("=") + 1)]
      : [args[i], undefined];
    const value = () => inline ?? args[++i];
    if (flag === "--runs") options.runs = count("--runs", value(), 1);
    else if (flag === "--warmup") options.warmup = count("--warmup", value(), 0);
    else if (flag === "--concurrent") options.concurrent = count("--concurrent", value(), 0);
    else if (flag === "--json" || flag === "--markdown") {
      const format = flag.slice(2) as "json" | "markdown";
      if (options.format !== "text" && options.format !== format) {
        throw new UsageError("--json and --markdown cannot be combined");
      }
      options.format = format;
    } else if (flag === "-h" || flag === "--help") throw new HelpRequested();
    else throw new UsageError(`unknown argument "${args[i]}"`);
  }
  return options;
}

class UsageError extends Error {}
class HelpRequested extends Error {}

// ── Measuring one process ───────────────────────────────────────────────────────────────────────

interface Meter {
  /** GNU time is there (peak RSS; CPU time in 10 ms steps when there is no bash). */
  gnuTime: boolean;
  /** bash is there (CPU time in ms); `epoch`: it has `$EPOCHREALTIME` (bash ≥ 5) for the wall time. */
  bash: boolean;
  epoch: boolean;
}

const BASH_SCRIPT = 'f=$1; shift; t0=$EPOCHREALTIME; "$@"; s=$?; t1=$EPOCHREALTIME; ' +
  '{ echo "$t0 $t1"; times; } >"$f"; exit $s';

async function detectMeter(): Promise<Meter> {
  const probe = async (program: string, args: string[]) => {
    try {
      const out = await new Deno.Command(program, { args, stdin: "null", stdout: "piped", stderr: "piped" }).output();
      return out.success ? new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr) : undefined;
    } catch {
      return undefined;
    }
  };
  const linux = Deno.build.os === "linux";
  const gnuTime = linux && /^\d+\s*$/.test(await probe(GNU_TIME, ["-f", "%M", "true"]) ?? "");
  const bashOut = await probe("bash", ["-c", 'echo "$EPOCHREALTIME"; times']);
  const bash = bashOut !== undefined && parseTimes(bashOut) !== undefined;
  const epoch = bash && /^\d+[.,]\d+\n/.test(bashOut ?? "");
  return { gnuTime, bash, epoch };
}

function describeMeter(meter: Meter): { wall: string; cpu: string; rss: string } {
  return {
    wall: meter.epoch
      ? "bash $EPOCHREALTIME just before and after the command (µs)"
      : "the benchmark's own clock around the wrapped command (includes the wrappers' start-up)",
    cpu: meter.bash
      ? "user+sys of the command and the descendants it waited for: bash `times` (getrusage of children, ms)"
      : meter.gnuTime
      ? "GNU time %U+%S (cut to 10 ms steps: coarse)"
      : "not measured (neither bash nor GNU time found)",
    rss: meter.gnuTime
      ? "GNU time %M: the largest resident set of any one process in the tree (KiB)"
      : `not measured (${GNU_TIME} is not GNU time, or absent)`,
  };
}

/** The children's line of bash's `times`: `0m0.016s 0m0.017s` → user and sys in ms. */
function parseTimes(text: string): { userMs: number; sysMs: number } | undefined {
  const lines = text.trim().split("\n").filter((line) => /^\d+m\d/.test(line));
  const m = lines.at(-1)?.match(/^(\d+)m(\d+[.,]\d+)s\s+(\d+)m(\d+[.,]\d+)s$/);
  if (!m || lines.length < 2) return undefined;
  const ms = (min: string, s: string) => (Number(min) * 60 + Number(s.replace(",", "."))) * 1000;
  return { userMs: ms(m[1], m[2]), sysMs: ms(m[3], m[4]) };
}

interface Sample {
  wallMs: number;
  cpuMs?: number;
  userMs?: number;
  sysMs?: number;
  rssKiB?: number;
  /** Requests the mock issuer received during the run. */
  issuerRequests: number;
}

interface RunOutput {
  code: number;
  stdout: string;
  stderr: string;
  sample: Sample;
}

/** The processes running now, so that a timeout or Ctrl-C can end them (and what they started). */
const running = new Set<Deno.ChildProcess>();

/**
 * Kills a process we started and its descendants, by id, the youngest first. The tree comes from `ps`:
 * Deno lets a script read /proc only with --allow-all.
 */
async function killTree(root: number): Promise<void> {
  const pids = [root];
  const table = Deno.build.os === "windows" ? undefined : await text("ps", ["-A", "-o", "pid=,ppid="]);
  const parents = (table ?? "").split("\n").map((line) => line.trim().split(/\s+/).map(Number));
  for (let i = 0; i < pids.length; i++) {
    for (const [pid, parent] of parents) if (parent === pids[i] && Number.isInteger(pid)) pids.push(pid);
  }
  for (const pid of pids.reverse()) {
    try {
      Deno.kill(pid, "SIGKILL");
    } catch { /* already gone */ }
  }
}

async function runMeasured(
  meter: Meter,
  dir: string,
  argv: string[],
  env: Record<string, string>,
  mock: ServedMock,
): Promise<RunOutput> {
  const timeFile = `${dir}/gnu-time.txt`;
  const bashFile = `${dir}/bash-times.txt`;
  for (const file of [timeFile, bashFile]) await Deno.remove(file).catch(() => {});
  const wrapped = [
    ...(meter.gnuTime ? [GNU_TIME, "-f", "%e %U %S %M", "-o", timeFile] : []),
    ...(meter.bash ? ["bash", "-c", BASH_SCRIPT, "bench-wrapper", bashFile] : []),
    ...argv,
  ];
  const requestsBefore = mock.requests.length;
  const started = performance.now();
  const { output, timedOut } = await runTracked(wrapped, env);
  const benchWallMs = performance.now() - started;
  const decode = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
  if (timedOut) throw new Error(`"${argv.join(" ")}" took longer than ${RUN_TIMEOUT_MS / 1000} s and was killed`);
  const sample: Sample = { wallMs: benchWallMs, issuerRequests: mock.requests.length - requestsBefore };
  if (meter.gnuTime) {
    // A failed command adds a "Command exited with non-zero status" line first: the numbers are last.
    const last = (await Deno.readTextFile(timeFile)).trim().split("\n").at(-1) ?? "";
    const [, user, sys, rss] = last.split(" ").map(Number);
    sample.rssKiB = rss;
    if (!meter.bash) Object.assign(sample, { userMs: user * 1000, sysMs: sys * 1000, cpuMs: (user + sys) * 1000 });
  }
  if (meter.bash) {
    const text = await Deno.readTextFile(bashFile);
    const times = parseTimes(text);
    if (!times) throw new Error(`cannot read bash's times from: ${JSON.stringify(text)}`);
    Object.assign(sample, { ...times, cpuMs: times.userMs + times.sysMs });
    const [t0, t1] = (text.split("\n")[0] ?? "").split(" ").map((t) => Number(t.replace(",", ".")));
    if (meter.epoch && Number.isFinite(t0) && Number.isFinite(t1)) sample.wallMs = (t1 - t0) * 1000;
  }
  return { code: output.code, stdout: decode(output.stdout), stderr: decode(output.stderr), sample };
}

// ── The cases ───────────────────────────────────────────────────────────────────────────────────

interface Case {
  id: string;
  label: string;
  /** What follows `deno run <permissions>`. */
  args: string[];
  env: Record<string, string>;
  note?: string;
  /** Runs before each run, untimed. */
  prepare?: () => Promise<void>;
  /** Throws when the run did not do what the case is about. */
  check: (run: RunOutput) => void | Promise<void>;
  /** The whole command, for a case that is not `deno run` (curl); `args` is then unused. */
  command?: string[];
}

function fail(run: RunOutput, why: string): never {
  throw new Error(`${why} (exit ${run.code})\n--- stdout ---\n${run.stdout}\n--- stderr ---\n${run.stderr}`);
}

function expectExit0(run: RunOutput): void {
  if (run.code !== 0) fail(run, "the run failed");
}

/** Logs in once with a `login` process and the scripted browser, so that `dir` holds a valid entry. */
async function setUpLogin(argv: string[], env: Record<string, string>): Promise<void> {
  const { output } = await runTracked(argv, env);
  if (!output.success) {
    throw new Error(`the set-up login failed (exit ${output.code}):\n${new TextDecoder().decode(output.stderr)}`);
  }
}

/** Runs `argv` in the repository with only `env`, tracked for Ctrl-C and killed after RUN_TIMEOUT_MS. */
async function runTracked(
  argv: string[],
  env: Record<string, string>,
): Promise<{ output: Deno.CommandOutput; timedOut: boolean }> {
  const child = new Deno.Command(argv[0], {
    args: argv.slice(1),
    cwd: ROOT,
    clearEnv: true,
    env,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  running.add(child);
  let timedOut = false;
  const watchdog = setTimeout(() => {
    timedOut = true;
    killTree(child.pid);
  }, RUN_TIMEOUT_MS);
  try {
    return { output: await child.output(), timedOut };
  } finally {
    clearTimeout(watchdog);
    running.delete(child);
  }
}

async function readEntry(dir: string): Promise<{ name: string; entry: Record<string, unknown> }> {
  const storage = fileStorage(dir);
  const [name] = await storage.list();
  const text = name === undefined ? undefined : await storage.read(`${name}.json`);
  if (text === undefined) throw new Error(`no cache entry in ${dir}`);
  return { name, entry: JSON.parse(text) };
}

/** Whether `command` runs here (answers --version). */
async function commandExists(command: string): Promise<boolean> {
  try {
    return (await new Deno.Command(command, { args: ["--version"], stdout: "null", stderr: "null" }).output()).success;
  } catch {
    return false;
  }
}

async function makeCases(mock: ServedMock, tmp: string, baseEnv: Record<string, string>): Promise<Case[]> {
  const issuerFlags = ["--issuer", mock.issuer, "--client-id", PUBLIC_CLIENT.id];
  const hotDir = `${tmp}/cache-hot`;
  const refreshDir = `${tmp}/cache-refresh`;
  const loginDir = `${tmp}/cache-login`;
  // The scripted browser: curl where it exists (it follows the redirects and costs a few ms, so the
  // login case measures the tool), else a second deno process (bench/browser.ts, about one floor).
  const curl = ["curl", "--silent", "--fail", "--location", "--max-time", "20", "--output", "/dev/null"];
  const browser = (await commandExists("curl"))
    ? curl
    : [Deno.execPath(), "run", "--quiet", "--allow-net=127.0.0.1", `${ROOT}/bench/browser.ts`];
  if (browser.some((part) => /[\s:"']/.test(part))) {
    throw new Error(`login.ts splits $BROWSER at ":" and white space, so these cannot hold any: ${browser.join(" ")}`);
  }
  const loginArgv = [Deno.execPath(), "run", ...PERMISSIONS, "login.ts", "login", ...issuerFlags, "--timeout", "30"];
  const browserEnv = { ...baseEnv, BROWSER: browser.join(" ") };
  await setUpLogin(loginArgv, { ...browserEnv, OAUTH_LOGIN_CACHE: hotDir });
  await setUpLogin(loginArgv, { ...browserEnv, OAUTH_LOGIN_CACHE: refreshDir });
  const hot = await readEntry(hotDir);
  const hotToken = hot.entry.accessToken;
  const codeExchanges = () => mock.calls("token").filter((r) => r.form.grant_type === "authorization_code").length;
  let codeExchangesBefore = 0;
  const refreshes = () => mock.calls("token").filter((r) => r.form.grant_type === "refresh_token").length;
  let refreshesBefore = 0;

  return [
    {
      id: "floor",
      label: "floor: empty script",
      args: ["bench/empty.ts"],
      env: baseEnv,
      check: expectExit0,
    },
    {
      id: "same-work",
      label: "same work: read a JSON file, print a line",
      note: "bench/same_work.ts reads the cached `token` case's entry and prints its access token: that case's work, " +
        "done the minimal way",
      args: ["bench/same_work.ts", `${hotDir}/${hot.name}.json`],
      env: baseEnv,
      check: (run) => {
        expectExit0(run);
        if (run.stdout.trim() !== hotToken) fail(run, "the same-work script did not print the cached token");
      },
    },
    {
      id: "help",
      label: "--help",
      args: ["login.ts", "--help"],
      env: baseEnv,
      check: (run) => {
        expectExit0(run);
        if (!run.stdout.includes("Usage:")) fail(run, "--help printed no usage");
      },
    },
    {
      id: "token-hot",
      label: "token, cached (hot path)",
      args: ["login.ts", "token", ...issuerFlags],
      env: { ...baseEnv, OAUTH_LOGIN_CACHE: hotDir },
      check: (run) => {
        expectExit0(run);
        if (run.stdout.trim() !== hotToken) fail(run, "token did not print the cached token");
        // A request to the issuer is reported (and fails the benchmark at the end), not thrown here.
      },
    },
    {
      id: "token-refresh",
      label: "token, refresh",
      note: "the cache entry is rewritten as expired before each run (untimed); one refresh request per run",
      args: ["login.ts", "token", ...issuerFlags],
      env: { ...baseEnv, OAUTH_LOGIN_CACHE: refreshDir },
      prepare: async () => {
        const { name, entry } = await readEntry(refreshDir);
        entry.expiresAt = Date.now() - 60_000;
        await fileStorage(refreshDir).write(`${name}.json`, JSON.stringify(entry, null, 2) + "\n");
        refreshesBefore = refreshes();
      },
      check: async (run) => {
        expectExit0(run);
        if (refreshes() - refreshesBefore !== 1) fail(run, "token did not refresh exactly once");
        const { entry } = await readEntry(refreshDir);
        if (run.stdout.trim() !== entry.accessToken || !mock.accessTokens.has(run.stdout.trim())) {
          fail(run, "token did not print the refreshed token");
        }
      },
    },
    {
      id: "login",
      label: "login, scripted browser",
      note:
        `includes the scripted browser's own process (${
          browser[0] === "curl" ? "curl" : "a second deno run, bench/browser.ts"
        }): ` +
        "CPU is the sum of both, peak RSS the larger of the two",
      args: loginArgv.slice(2 + PERMISSIONS.length),
      env: { ...browserEnv, OAUTH_LOGIN_CACHE: loginDir },
      prepare: () => {
        codeExchangesBefore = codeExchanges();
        return Promise.resolve();
      },
      check: async (run) => {
        expectExit0(run);
        if (codeExchanges() - codeExchangesBefore !== 1) fail(run, "login did not exchange exactly one code");
        const { entry } = await readEntry(loginDir);
        if (!mock.accessTokens.has(entry.accessToken as string)) fail(run, "login cached no token the issuer issued");
      },
    },
    // `fetch` with the cached Bearer token, to an API on this machine (the mock's UserInfo), beside
    // curl sending the same token (in its argv: fine here, never in real use).
    {
      id: "fetch-hot",
      label: "fetch, cached token",
      note: "GET of the mock's /userinfo with the cached Bearer token; no refresh",
      args: ["login.ts", "fetch", ...issuerFlags, `${mock.issuer}/userinfo`],
      env: { ...baseEnv, OAUTH_LOGIN_CACHE: hotDir },
      check: (run) => {
        expectExit0(run);
        if (!run.stdout.includes(mock.user.sub)) fail(run, "fetch did not print the API's answer");
      },
    },
    ...(browser[0] === "curl"
      ? [{
        id: "curl",
        label: "curl, same token",
        note: "curl -H 'Authorization: Bearer …' of the same URL with the same token, for comparison",
        args: [],
        command: ["curl", "--silent", "--fail", "-H", `Authorization: Bearer ${hotToken}`, `${mock.issuer}/userinfo`],
        env: baseEnv,
        check: (run: RunOutput) => {
          expectExit0(run);
          if (!run.stdout.includes(mock.user.sub)) fail(run, "curl did not print the API's answer");
        },
      }]
      : []),
  ];
}

// ── Many processes at once ──────────────────────────────────────────────────────────────────────

/** How many `token` processes a batch starts at once. */
const BATCH_SIZE = 64;
/**
 * Starts `count` commands at once from one bash (its forks are cheap; spawning each from here would
 * stagger them), waits for all, and writes each one's stdout and exit code, and the batch's start and
 * end ($EPOCHREALTIME), to files in `dir`.
 */
const BATCH_SCRIPT = `dir=$1; count=$2; shift 2; t0=$EPOCHREALTIME
for i in $(seq 1 "$count"); do ( "$@" >"$dir/out.$i" 2>"$dir/err.$i" </dev/null; echo $? >"$dir/code.$i" ) & done
wait; echo "$t0 $EPOCHREALTIME" >"$dir/wall"`;

interface ConcurrentResult {
  size: number;
  /** Wall time of each whole batch (ms): against an expired entry (one refresh), and a cached one. */
  refresh: number[];
  cached: number[];
  stats: { refresh?: Stats; cached?: Stats };
}

/**
 * `batches` rounds of two batches, in a random order each round: BATCH_SIZE `token` processes at once
 * against an expired entry (it must make exactly one refresh request, and all print the token it
 * got), and as many against the then cached entry (no request). The entry is a copy of `fromDir`'s.
 */
async function concurrentBatches(
  mock: ServedMock,
  tmp: string,
  baseEnv: Record<string, string>,
  fromDir: string,
  batches: number,
): Promise<ConcurrentResult> {
  const cacheDir = `${tmp}/cache-concurrent`;
  const { name, entry } = await readEntry(fromDir);
  await fileStorage(cacheDir).write(`${name}.json`, JSON.stringify(entry, null, 2) + "\n");
  const issuerFlags = ["--issuer", mock.issuer, "--client-id", PUBLIC_CLIENT.id];
  const argv = [Deno.execPath(), "run", ...PERMISSIONS, "login.ts", "token", ...issuerFlags];
  const refreshes = () => mock.calls("token").filter((r) => r.form.grant_type === "refresh_token").length;
  const result: ConcurrentResult = { size: BATCH_SIZE, refresh: [], cached: [], stats: {} };
  for (let round = 0; round < batches; round++) {
    for (const kind of shuffled(["refresh", "cached"] as const)) {
      if (kind === "refresh") {
        const { entry } = await readEntry(cacheDir);
        entry.expiresAt = Date.now() - 60_000;
        entry.issuedAt = (entry.expiresAt as number) - 3600_000;
        await fileStorage(cacheDir).write(`${name}.json`, JSON.stringify(entry, null, 2) + "\n");
      }
      const before = refreshes();
      const dir = await Deno.makeTempDir({ dir: tmp, prefix: "batch-" });
      const { output, timedOut } = await runTracked(
        ["bash", "-c", BATCH_SCRIPT, "batch", dir, String(BATCH_SIZE), ...argv],
        { ...baseEnv, LC_ALL: "C", OAUTH_LOGIN_CACHE: cacheDir },
      );
      const what = `${BATCH_SIZE} token processes at once (${kind})`;
      if (timedOut || !output.success) throw new Error(`${what} did not finish within ${RUN_TIMEOUT_MS / 1000} s`);
      const token = `${(await readEntry(cacheDir)).entry.accessToken}\n`;
      for (let i = 1; i <= BATCH_SIZE; i++) {
        const code = (await Deno.readTextFile(`${dir}/code.${i}`)).trim();
        if (code !== "0") throw new Error(`${what}: one exited ${code}: ${await Deno.readTextFile(`${dir}/err.${i}`)}`);
        if (await Deno.readTextFile(`${dir}/out.${i}`) !== token) throw new Error(`${what}: one printed another token`);
      }
      const made = refreshes() - before;
      if (made !== (kind === "refresh" ? 1 : 0)) throw new Error(`${what} made ${made} refresh requests`);
      const [t0, t1] = (await Deno.readTextFile(`${dir}/wall`)).trim().split(" ").map(Number);
      result[kind].push((t1 - t0) * 1000);
      await Deno.remove(dir, { recursive: true });
    }
  }
  result.stats = { refresh: stats(result.refresh), cached: stats(result.cached) };
  return result;
}

// ── Statistics ──────────────────────────────────────────────────────────────────────────────────

interface Stats {
  median: number;
  p10: number;
  p90: number;
  /** Median absolute deviation from the median. */
  mad: number;
  min: number;
  max: number;
  mean: number;
}

/** The q-quantile with linear interpolation between the closest ranks. */
function quantile(sorted: number[], q: number): number {
  const at = (sorted.length - 1) * q;
  const low = Math.floor(at);
  const high = Math.ceil(at);
  return sorted[low] + (sorted[high] - sorted[low]) * (at - low);
}

function stats(values: (number | undefined)[]): Stats | undefined {
  if (values.length === 0 || values.some((v) => v === undefined || !Number.isFinite(v))) return undefined;
  const sorted = (values as number[]).toSorted((a, b) => a - b);
  const median = quantile(sorted, 0.5);
  const deviations = sorted.map((v) => Math.abs(v - median)).sort((a, b) => a - b);
  return {
    median,
    p10: quantile(sorted, 0.1),
    p90: quantile(sorted, 0.9),
    mad: quantile(deviations, 0.5),
    min: sorted[0],
    max: sorted[sorted.length - 1],
    mean: sorted.reduce((a, b) => a + b, 0) / sorted.length,
  };
}

const METRICS = [
  { key: "wallMs", title: "wall ms", scale: 1, digits: 1 },
  { key: "cpuMs", title: "CPU ms", scale: 1, digits: 1 },
  { key: "rssKiB", title: "peak RSS MiB", scale: 1 / 1024, digits: 1 },
] as const;

type MetricKey = typeof METRICS[number]["key"];

interface CaseResult {
  id: string;
  label: string;
  command: string[];
  note?: string;
  warmupIssuerRequests: number;
  samples: Sample[];
  stats: Partial<Record<MetricKey, Stats>>;
  /** The case's median over the floor's. */
  ratio: Partial<Record<MetricKey, number>>;
  /** The case's median over the same-work script's (the cached `token` case only). */
  sameWorkRatio?: Partial<Record<MetricKey, number>>;
}

/** The cached `token`'s targets against the same-work script (issue 10): wall time and peak memory. */
const SAME_WORK_TARGETS: Partial<Record<MetricKey, number>> = { wallMs: 1.10, rssKiB: 1.15 };

// ── The machine ─────────────────────────────────────────────────────────────────────────────────

async function text(program: string, args: string[]): Promise<string | undefined> {
  try {
    const out = await new Deno.Command(program, { args, cwd: ROOT, stdin: "null", stdout: "piped", stderr: "null" })
      .output();
    return out.success ? new TextDecoder().decode(out.stdout).trim() : undefined;
  } catch {
    return undefined;
  }
}

/** A file's text; through `cat` for /proc, which Deno lets a script read only with --allow-all. */
async function readText(path: string): Promise<string | undefined> {
  return await Deno.readTextFile(path).catch(() => text("cat", [path]));
}

async function loadAverage(): Promise<string | undefined> {
  return (await readText("/proc/loadavg"))?.split(" ").slice(0, 3).join(" ");
}

async function machine() {
  const cpuinfo = await readText("/proc/cpuinfo");
  const osRelease = await readText("/etc/os-release");
  let memoryBytes: number | undefined;
  let kernel: string | undefined;
  try {
    memoryBytes = Deno.systemMemoryInfo().total;
    kernel = Deno.osRelease();
  } catch { /* no --allow-sys */ }
  const commit = await text("git", ["rev-parse", "--short", "HEAD"]);
  const dirty = await text("git", ["status", "--porcelain", "--", "login.ts"]);
  return {
    date: new Date().toISOString(),
    cpu: cpuinfo?.match(/^model name\s*:\s*(.+)$/m)?.[1].trim() ?? "unknown CPU",
    cores: navigator.hardwareConcurrency,
    memoryBytes,
    os: `${osRelease?.match(/^PRETTY_NAME="?([^"\n]*)"?$/m)?.[1] ?? Deno.build.os}` +
      `${kernel ? `, kernel ${kernel}` : ""}, ${Deno.build.arch}`,
    deno: (await text(Deno.execPath(), ["--version"]))?.split("\n").join(", ") ?? `deno ${Deno.version.deno}`,
    loginTs: commit ? `${commit}${dirty ? " + uncommitted changes" : ""}` : undefined,
  };
}

// ── Output ──────────────────────────────────────────────────────────────────────────────────────

function fmt(value: number, digits: number): string {
  return value.toFixed(digits);
}

function cells(result: CaseResult, floor: CaseResult, sameWork?: CaseResult): string[] {
  const row = [result.label];
  for (const metric of METRICS) {
    const s = result.stats[metric.key];
    const f = floor.stats[metric.key];
    if (!s || !f) {
      row.push("–", "–");
      continue;
    }
    const v = (x: number) => fmt(x * metric.scale, metric.digits);
    row.push(`${v(s.median)} (${v(s.p10)}–${v(s.p90)})`);
    const delta = (s.median - f.median) * metric.scale;
    row.push(
      result === floor
        ? "1.00×"
        : `${fmt(s.median / f.median, 2)}× (${delta >= 0 ? "+" : "−"}${fmt(Math.abs(delta), metric.digits)})`,
    );
  }
  const requests = result.samples.reduce((n, s) => n + s.issuerRequests, 0);
  row.push(requests === 0 ? "0" : `${requests} (${fmt(requests / result.samples.length, 1)}/run)`);
  if (sameWork) {
    const ratios = result === sameWork ? { wallMs: 1, cpuMs: 1, rssKiB: 1 } : result.sameWorkRatio;
    row.push(
      ratios ? METRICS.map((m) => ratios[m.key] === undefined ? "–" : `${fmt(ratios[m.key]!, 2)}×`).join(" / ") : "",
    );
  }
  return row;
}

function headers(sameWork: boolean): string[] {
  return [
    "case",
    ...METRICS.flatMap((m) => [m.title, "× floor"]),
    "issuer requests",
    ...(sameWork ? ["× same work (wall / CPU / RSS)"] : []),
  ];
}

/** The cached `token` against the same-work script, and the targets. */
function sameWorkLine(hot: CaseResult): string | undefined {
  const ratio = hot.sameWorkRatio;
  if (!ratio) return undefined;
  const parts = METRICS.map((m) => {
    const value = ratio[m.key];
    if (value === undefined) return `${m.title.replace(/ ms| MiB/, "")} –`;
    const target = SAME_WORK_TARGETS[m.key];
    const verdict = target === undefined ? "" : ` (target ${fmt(target, 2)}×: ${value <= target ? "met" : "NOT met"})`;
    return `${m.title.replace(/ ms| MiB/, "")} ${fmt(value, 3)}×${verdict}`;
  });
  return `token, cached, over the same-work script: ${parts.join(", ")}.`;
}

function textTable(rows: string[][]): string {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((row) => row[i].length)));
  return rows.map((row, r) =>
    row.map((cell, i) => i === 0 ? cell.padEnd(widths[i]) : cell.padStart(widths[i])).join("  ").trimEnd() +
    (r === 0 ? "\n" + widths.map((w) => "-".repeat(w)).join("  ") : "")
  ).join("\n");
}

function markdownTable(rows: string[][]): string {
  const line = (row: string[]) => `| ${row.map((c) => c.replaceAll("|", "\\|")).join(" | ")} |`;
  const align = rows[0].map((_, i) => i === 0 ? ":--" : "--:");
  return [line(rows[0]), line(align), ...rows.slice(1).map(line)].join("\n");
}

interface Report {
  machine: Awaited<ReturnType<typeof machine>>;
  loadAverage: { before?: string; after?: string };
  method: ReturnType<typeof describeMeter>;
  runs: { warmup: number; measured: number; order: string };
  totalSeconds: number;
  cases: CaseResult[];
  /** The batches of many `token` processes at once, when run. */
  concurrent?: ConcurrentResult;
}

function range(s: Stats): string {
  return `${fmt(s.median, 0)} (${fmt(s.min, 0)}–${fmt(s.max, 0)})`;
}

/** A warning when other programs kept the machine busy: the wall times then say little (CPU and memory still do). */
function busy(report: Report): string | undefined {
  const loads = [report.loadAverage.before, report.loadAverage.after].map((l) => Number(l?.split(" ")[0]));
  const cores = report.machine.cores;
  if (!loads.some((load) => load > cores)) return undefined;
  return `WARNING: the load average (${loads.join(", ")}) was above the ${cores} cores: other programs competed ` +
    "for the CPU, so the wall times (and their ratios) are not reliable; compare CPU time and peak memory.";
}

function render(report: Report, format: "text" | "markdown"): string {
  const [floor] = report.cases;
  const sameWork = report.cases.find((c) => c.id === "same-work");
  const rows = [headers(sameWork !== undefined), ...report.cases.map((c) => cells(c, floor, sameWork))];
  const m = report.machine;
  const memory = m.memoryBytes ? `, ${fmt(m.memoryBytes / 2 ** 30, 1)} GiB` : "";
  const hot = report.cases.find((c) => c.id === "token-hot");
  const hotRequests = hot ? hot.samples.reduce((n, s) => n + s.issuerRequests, 0) + hot.warmupIssuerRequests : 0;
  const info = [
    `Date: ${m.date}`,
    `Machine: ${m.cpu} (${m.cores} cores${memory}); ${m.os}`,
    `Deno: ${m.deno}`,
    ...(m.loginTs ? [`login.ts: ${m.loginTs}`] : []),
    `Runs: ${report.runs.warmup} warm-up + ${report.runs.measured} measured per case, ${report.runs.order}; ` +
    `load average before ${report.loadAverage.before ?? "?"}, after ${report.loadAverage.after ?? "?"}`,
    "Cells: median (p10–p90) of the measured runs; × floor: the median over the floor's median " +
    "(+ the difference); CPU is user+sys",
  ];
  const notes = [
    `Wall time: ${report.method.wall}.`,
    `CPU time: ${report.method.cpu}.`,
    `Peak RSS: ${report.method.rss}.`,
    "Every case is `deno run " + PERMISSIONS.join(" ") + " …` in the repository's root; the mock issuer runs " +
    "inside the benchmark, so its own work is in no case.",
    ...report.cases.filter((c) => c.note).map((c) => `${c.label}: ${c.note}.`),
    ...(hot
      ? [
        `token, cached: the mock issuer received ${hotRequests} requests during its ` +
        `${hot.samples.length} measured and ${report.runs.warmup} warm-up runs` +
        (hotRequests === 0 ? " (as it must)." : " — it must be 0: THE HOT PATH TALKS TO THE ISSUER."),
        ...(sameWorkLine(hot) ? [sameWorkLine(hot)!] : []),
      ]
      : []),
    ...(busy(report) ? [busy(report)!] : []),
    ...(report.concurrent?.stats.refresh && report.concurrent.stats.cached
      ? [
        `${report.concurrent.size} \`token\` processes started at once by one bash, the wall time of the whole ` +
        `batch, median (min–max) of ${report.concurrent.refresh.length}: against an expired entry (exactly one ` +
        `refresh request, all print the same token) ${range(report.concurrent.stats.refresh)} ms; against the ` +
        `cached entry ${range(report.concurrent.stats.cached)} ms.`,
      ]
      : []),
    `The benchmark took ${fmt(report.totalSeconds, 1)} s.`,
  ];
  if (format === "markdown") {
    return [
      info.map((line) => `${line}  `).join("\n"),
      "",
      markdownTable(rows),
      "",
      notes.map((line) => `- ${line}`).join("\n"),
      "",
    ].join("\n");
  }
  return [info.join("\n"), "", textTable(rows), "", notes.map((line) => `* ${line}`).join("\n"), ""].join("\n");
}

// ── Main ────────────────────────────────────────────────────────────────────────────────────────

function shuffled<T>(items: T[]): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
}

async function bench(options: Options): Promise<number> {
  const startedAt = performance.now();
  const progress = (line: string, done = false) => {
    if (Deno.stderr.isTerminal()) Deno.stderr.writeSync(new TextEncoder().encode(`\r\x1b[K${line}${done ? "\n" : ""}`));
    else if (done) Deno.stderr.writeSync(new TextEncoder().encode(`${line}\n`));
  };
  const meter = await detectMeter();
  if (!meter.gnuTime) console.error(`bench: ${GNU_TIME} (GNU time) is missing: no peak RSS`);
  if (!meter.bash) console.error("bench: bash is missing: CPU time in 10 ms steps at best, wall time with overhead");
  if (await Deno.stat(`${ROOT}/.env`).then(() => true, () => false)) {
    console.error("bench: warning: there is a .env in the repository's root; login.ts will read it in every run");
  }
  const loadBefore = await loadAverage();

  const tmp = await Deno.makeTempDir({ prefix: "oauth-login-bench-" });
  const mock = serveMockIssuer();
  let cleaned: Promise<void> | undefined;
  const cleanup = () =>
    cleaned ??= (async () => {
      await Promise.all([...running].map((child) => killTree(child.pid)));
      await mock.close();
      await Deno.remove(tmp, { recursive: true }).catch(() => {});
    })();
  const onSignal = async () => {
    console.error("\nbench: interrupted; cleaning up");
    await cleanup();
    Deno.exit(130);
  };
  const signals: Deno.Signal[] = Deno.build.os === "windows" ? ["SIGINT"] : ["SIGINT", "SIGTERM"];
  for (const signal of signals) Deno.addSignalListener(signal, onSignal);

  try {
    const baseEnv: Record<string, string> = { NO_COLOR: "1", DENO_NO_UPDATE_CHECK: "1" };
    for (const name of PASSED_ENV) {
      const value = Deno.env.get(name);
      if (value !== undefined) baseEnv[name] = value;
    }
    const cases = await makeCases(mock, tmp, baseEnv);
    const results: CaseResult[] = cases.map((c) => ({
      id: c.id,
      label: c.label,
      command: c.command ?? [Deno.execPath(), "run", ...PERMISSIONS, ...c.args],
      note: c.note,
      warmupIssuerRequests: 0,
      samples: [],
      stats: {},
      ratio: {},
    }));
    const once = async (index: number, measured: boolean) => {
      const c = cases[index];
      await c.prepare?.();
      const run = await runMeasured(meter, tmp, results[index].command, c.env, mock);
      await c.check(run);
      if (measured) results[index].samples.push(run.sample);
      else results[index].warmupIssuerRequests += run.sample.issuerRequests;
    };
    const indexes = cases.map((_, i) => i);
    for (let round = 0; round < options.warmup; round++) {
      progress(`bench: warm-up ${round + 1}/${options.warmup}`);
      for (const i of shuffled(indexes)) await once(i, false);
    }
    for (let round = 0; round < options.runs; round++) {
      progress(`bench: round ${round + 1}/${options.runs}`);
      for (const i of shuffled(indexes)) await once(i, true);
    }
    progress(`bench: ${options.runs} rounds of ${cases.length} cases done`, true);
    let concurrent: ConcurrentResult | undefined;
    if (options.concurrent > 0 && meter.epoch) {
      progress(`bench: ${options.concurrent} × 2 batches of ${BATCH_SIZE} token processes at once`);
      concurrent = await concurrentBatches(mock, tmp, baseEnv, `${tmp}/cache-refresh`, options.concurrent);
      progress(`bench: batches of ${BATCH_SIZE} token processes done`, true);
    } else if (options.concurrent > 0) {
      console.error("bench: bash with $EPOCHREALTIME is missing: no batches of processes at once");
    }

    const [floor] = results;
    for (const result of results) {
      for (const metric of METRICS) {
        const s = stats(result.samples.map((sample) => sample[metric.key]));
        if (!s) continue;
        result.stats[metric.key] = s;
        const f = floor.stats[metric.key] ?? s;
        result.ratio[metric.key] = s.median / f.median;
      }
    }
    const sameWork = results.find((r) => r.id === "same-work");
    const hotResult = results.find((r) => r.id === "token-hot");
    if (sameWork && hotResult) {
      hotResult.sameWorkRatio = {};
      for (const metric of METRICS) {
        const [h, w] = [hotResult.stats[metric.key], sameWork.stats[metric.key]];
        if (h && w) hotResult.sameWorkRatio[metric.key] = h.median / w.median;
      }
    }
    const report: Report = {
      machine: await machine(),
      loadAverage: { before: loadBefore, after: await loadAverage() },
      method: describeMeter(meter),
      runs: { warmup: options.warmup, measured: options.runs, order: "interleaved, a random order each round" },
      totalSeconds: (performance.now() - startedAt) / 1000,
      cases: results,
      concurrent,
    };
    if (options.format === "json") console.log(JSON.stringify(report, null, 2));
    else console.log(render(report, options.format));
    const hot = results.find((r) => r.id === "token-hot");
    const hotRequests = hot ? hot.warmupIssuerRequests + hot.samples.reduce((n, s) => n + s.issuerRequests, 0) : 0;
    if (hotRequests > 0) {
      console.error("bench: the cached `token` path sent requests to the issuer; it must send none");
      return 1;
    }
    return 0;
  } finally {
    for (const signal of signals) Deno.removeSignalListener(signal, onSignal);
    await cleanup();
  }
}

if (import.meta.main) {
  let code: number;
  try {
    code = await bench(parseOptions(Deno.args));
  } catch (error) {
    if (error instanceof HelpRequested) {
      console.log(USAGE);
      code = 0;
    } else if (error instanceof UsageError) {
      console.error(`bench: ${error.message}\n\n${USAGE}`);
      code = 2;
    } else {
      console.error(`bench: ${error instanceof Error ? error.message : error}`);
      code = 1;
    }
  }
  if (code !== 0) Deno.exit(code);
}
