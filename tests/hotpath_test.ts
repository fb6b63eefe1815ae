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

Deno.test("a cached token compiles none of login.ts's functions lazily but the public API's (the eager form on its path)", async () => {
  const home = await Deno.makeTempDir({ prefix: "oauth-login-hotpath-" });
  try {
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
    const log = `${home}/v8.log`;
    const login = new URL("../login.ts", import.meta.url).pathname;
    const output = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        `--v8-flags=--log-function-events,--logfile=${log},--no-logfile-per-isolate`,
        login,
        "token",
        "--issuer",
        issuer,
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
    const events = (await Deno.readTextFile(log)).split("\n");
    // script-details,<id>,<url>,…: the id of login.ts; function,<event>,<id>,<start>,<end>,<ms>,<ts>,<name>.
    const script = events.map((line) => line.split(",")).find((f) =>
      f[0] === "script-details" && f[2] === `file://${login}`
    )
      ?.[1];
    const source = await Deno.readTextFile(login);
    const topLevel = new Set([...source.matchAll(/^(?:export )?(?:async )?function (\w+)/gm)].map((m) => m[1]));
    const lazy = new Set(
      events.map((line) => line.split(",")).filter((f) =>
        f[0] === "function" && (f[1] === "full-parse" || f[1] === "parse-function") && f[2] === script
      ).map((f) => f.at(-1)!),
    );
    const compiledLate = [...lazy].filter((name) => topLevel.has(name) && !DECLARED.includes(name)).sort();
    assertEquals(
      compiledLate,
      [],
      "these functions run on the cached token path: write each as `const f = (function f(…) {…}).bind(undefined)`",
    );
    // The log was read as meant: the public API's entry point is among the functions compiled on first call.
    assertEquals(lazy.has("main"), true, `no function events for login.ts (script ${script}) in the log`);
  } finally {
    await Deno.remove(home, { recursive: true });
  }
});
