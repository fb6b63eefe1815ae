/**
 * The cached `token` path compiles no function of login.ts on its first call: each one it runs is
 * written in the eager form (`const f = (function f(…) {…}).bind(undefined)`, see the module doc),
 * so V8 compiles it with the module and Deno's code cache keeps its bytecode. A real process runs a
 * cached `token` with V8's function-event log on, and the log names every function compiled lazily.
 * No time is measured here: `deno task bench` does that (bench/README.md).
 *
 * @module
 */
import { fileStorage, testing } from "../login.ts";
import { assertEquals } from "./assert.ts";

/** The public API's functions stay declarations (their documentation shows them as functions). */
const DECLARED = ["fileStorage", "main", "realDeps"];

/** A cached entry for `--issuer https://idp.example --client-id cli` in `${home}/cache`. */
async function cachedEntry(home: string): Promise<void> {
  const issuer = "https://idp.example";
  const name = testing.cacheKey({ issuer, clientId: "cli", scope: undefined, params: [] });
  const now = Date.now();
  await fileStorage(`${home}/cache`).write(
    `${name}.json`,
    JSON.stringify({
      version: 1,
      issuer,
      clientId: "cli",
      requestedScope: "",
      accessToken: "hot-path-token",
      tokenType: "Bearer",
      expiresAt: now + 86_400_000,
      issuedAt: now,
      authMethod: "none",
      metadata: { issuer, token_endpoint: `${issuer}/token` },
    }),
  );
}

/** The top-level functions of `module` that a cached `token` compiles on their first call, from V8's function-event log. */
async function compiledLazily(module: string, home: string): Promise<Set<string>> {
  const log = `${home}/v8.log`;
  await Deno.remove(log).catch(() => {});
  const output = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      `--v8-flags=--log-function-events,--logfile=${log},--no-logfile-per-isolate`,
      module,
      "token",
      "--issuer",
      "https://idp.example",
      "--client-id",
      "cli",
    ],
    env: { OAUTH_LOGIN_CACHE: `${home}/cache`, OAUTH_TOKEN_STORAGE: "file", NO_COLOR: "1" },
    clearEnv: true,
    cwd: home,
    stdin: "null",
  }).output();
  assertEquals(new TextDecoder().decode(output.stderr), "");
  assertEquals([output.code, new TextDecoder().decode(output.stdout)], [0, "hot-path-token\n"]);
  const events = (await Deno.readTextFile(log)).split("\n").map((line) => line.split(","));
  // script-details,<id>,<url>,…: the module's id; function,<event>,<id>,<start>,<end>,<ms>,<ts>,<name>.
  const script = events.find((f) => f[0] === "script-details" && f[2] === `file://${module}`)?.[1];
  const source = await Deno.readTextFile(module);
  const topLevel = new Set([...source.matchAll(/^(?:export )?(?:async )?function (\w+)/gm)].map((m) => m[1]));
  const lazy = events.filter((f) =>
    f[0] === "function" && (f[1] === "full-parse" || f[1] === "parse-function") && f[2] === script
  ).map((f) => f.at(-1)!);
  // The log was read as meant: the public API's entry point is compiled on its first call.
  assertEquals(lazy.includes("main"), true, `no function events for ${module} (script ${script}) in the log`);
  return new Set(lazy.filter((name) => topLevel.has(name) && !DECLARED.includes(name)));
}

/** The eager form (`const f = (function f(`, `const f: T =` and a new line, `(async function f(`) up to the name. */
const EAGER = /^const (\w+)(?::(?:[^=]|=>)*?)? =\s+\((async )?function \1\(/gm;

Deno.test("the functions in the eager form are exactly those a cached token runs (none compiled on first call but the public API's)", async () => {
  const home = await Deno.makeTempDir({ prefix: "oauth-login-hotpath-" });
  try {
    await cachedEntry(home);
    const login = new URL("../login.ts", import.meta.url).pathname;
    assertEquals(
      [...await compiledLazily(login, home)].sort(),
      [],
      "these functions run on the cached token path: write each as `const f = (function f(…) {…}).bind(undefined)`",
    );
    // The same module with every function declared: those compiled on first call are the path's, and only
    // they may be in the eager form.
    const source = await Deno.readTextFile(login);
    const eager = [...source.matchAll(EAGER)].map((m) => m[1]).sort();
    const declared = source.replace(EAGER, "$2function $1(").replaceAll("}).bind(undefined);", "}");
    await Deno.writeTextFile(`${home}/login.ts`, declared);
    await Deno.copyFile(new URL("../deno.json", import.meta.url), `${home}/deno.json`);
    await Deno.copyFile(new URL("../deno.lock", import.meta.url), `${home}/deno.lock`);
    assertEquals(
      eager,
      [...await compiledLazily(`${home}/login.ts`, home)].sort(),
      "the eager form is only for the functions a cached token runs",
    );
  } finally {
    await Deno.remove(home, { recursive: true });
  }
});
