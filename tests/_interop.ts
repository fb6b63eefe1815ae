/**
 * The real OpenID provider both interop suites run (oidc-provider under Node, tests/interop/provider.mjs):
 * starting and stopping it, and running a test with a fresh one and a temporary folder.
 *
 * @module
 */
import { fileURLToPath } from "node:url";
import { optionalTest } from "./_optional.ts";

const path = (relative: string) => fileURLToPath(new URL(relative, import.meta.url));
const PROVIDER = path("./interop/provider.mjs");
/** How long the provider may take to say where it listens, and to stop once asked, in milliseconds. */
const PROVIDER_START_MS = 15_000;
const PROVIDER_STOP_MS = 5_000;

/** A running provider: what its first stdout line said (`T`), what it wrote after, and how to stop it. */
export type Running<T> = T & {
  /** What the provider wrote so far, after its first line (complete after close). */
  log(): string;
  close(): Promise<void>;
};

/** A timer that runs `onTimeout` after `ms` milliseconds unless cancelled. */
export function deadline(ms: number, onTimeout: () => void): { cancel: () => void } {
  const id = setTimeout(() => {
    try {
      onTimeout();
    } catch { /* the process ended meanwhile */ }
  }, ms);
  return { cancel: () => clearTimeout(id) };
}

/** Starts the provider with `args`; resolves once its first stdout line (JSON: issuer, clients, …) is read. */
export async function startProvider<T>(args: string[] = []): Promise<Running<T>> {
  const child = new Deno.Command("node", {
    args: [PROVIDER, ...args],
    cwd: path("./interop/"),
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  // Everything it writes after its first stdout line, on either stream: read to the end, always
  // (a closed pipe would make its next console.log throw EPIPE and end it).
  let log = "";
  const drain = (stream: ReadableStream<Uint8Array>, write: (text: string) => void) =>
    stream.pipeThrough(new TextDecoderStream()).pipeTo(new WritableStream({ write })).catch(() => {});
  const stderrDone = drain(child.stderr, (text) => void (log += text));
  // The first stdout line says where it listens.
  let stdout = "";
  const { promise: started, resolve: startedWith } = Promise.withResolvers<string | undefined>();
  const stdoutDone = drain(child.stdout, (text) => {
    if (stdout.includes("\n")) return void (log += text);
    stdout += text;
    if (stdout.includes("\n")) startedWith(stdout.slice(0, stdout.indexOf("\n")));
  }).then(() => startedWith(undefined));
  let stopped = false;
  const close = async () => {
    if (stopped) return;
    stopped = true;
    await child.stdin.close().catch(() => {});
    const limit = deadline(PROVIDER_STOP_MS, () => child.kill("SIGKILL"));
    await child.status;
    limit.cancel();
    await Promise.all([stderrDone, stdoutDone]);
  };

  const limit = deadline(PROVIDER_START_MS, () => startedWith(undefined));
  const first = await started;
  limit.cancel();
  if (first === undefined) {
    await close();
    throw new Error(`oidc-provider did not start within ${PROVIDER_START_MS} ms; its output:\n${stdout}${log}`);
  }
  return { ...(JSON.parse(first) as T), log: () => log, close };
}

/** Runs `fn` with a provider from `start` and a temporary folder; always stops both, and shows its log on failure. */
export async function withRunning<P extends { log(): string; close(): Promise<void> }>(
  start: () => Promise<P>,
  prefix: string,
  fn: (provider: P, work: string) => Promise<void>,
): Promise<void> {
  const work = await Deno.makeTempDir({ prefix });
  let provider: P | undefined;
  try {
    provider = await start();
    await fn(provider, work);
  } catch (error) {
    if (provider) console.log(`--- oidc-provider output ---\n${provider.log()}--- end ---`);
    throw error;
  } finally {
    await provider?.close();
    await Deno.remove(work, { recursive: true });
  }
}

/** Why oidc-provider cannot run here (no Node, or the suite not prepared), or undefined when it can. */
function providerUnavailable(): string | undefined {
  try {
    if (!new Deno.Command("node", { args: ["--version"], stdout: "null", stderr: "null" }).outputSync().success) {
      return "node does not run";
    }
  } catch {
    return "node is not on PATH";
  }
  try {
    Deno.statSync(path("./interop/node_modules/oidc-provider/package.json"));
  } catch {
    return "tests/interop/node_modules is missing: run tests/interop/prepare.sh";
  }
  return undefined;
}

/**
 * The test function of a suite against oidc-provider (`file` names it): where the provider cannot run,
 * each test is skipped with the reason on a developer machine (said once) and fails in CI, which
 * prepares the suite (`optionalTest`).
 */
export function interopSuite(file: string): (name: string, fn: () => Promise<void>) => void {
  const skip = providerUnavailable();
  if (skip) console.log(`${file}: every test is skipped: ${skip}`);
  return (name, fn) => Deno.test(optionalTest({ name, fn }, skip));
}
