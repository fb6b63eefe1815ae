/**
 * The standalone binary: `deno compile` builds it (as `deno task compile` does), then it must print
 * its version and log in against the mock issuer with nothing read from beside login.ts. Compiling
 * downloads a Deno runtime on first use; where that is impossible (our build machines reach only the
 * npm registry and Debian's packages) both tests are skipped with the reason printed.
 */
import { assertEquals, assertStringIncludes } from "./assert.ts";
import { EXIT, VERSION } from "../login.ts";
import { PUBLIC_CLIENT, serveMockIssuer } from "./mock_issuer.ts";

const ROOT = new URL("../", import.meta.url).pathname;
const workDir = await Deno.makeTempDir({ prefix: "oauth-login-compile-" });
const binary = `${workDir}/oauth-login`;
globalThis.addEventListener("unload", () => Deno.removeSync(workDir, { recursive: true }));

const compiled = await new Deno.Command(Deno.execPath(), {
  args: [
    "compile",
    "--allow-net",
    "--allow-env",
    "--allow-read",
    "--allow-write",
    "--allow-run",
    "--allow-sys=uid",
    "--output",
    binary,
    `${ROOT}login.ts`,
  ],
  cwd: ROOT,
  env: { NO_COLOR: "1" },
  stdout: "null",
  stderr: "piped",
  signal: AbortSignal.timeout(180_000),
}).output().catch((error) => ({ success: false, stderr: new TextEncoder().encode(String(error)) }));

const lines = new TextDecoder().decode(compiled.stderr).split("\n");
const download = lines.find((line) => line.includes("Download"))?.replace(/^\s*Download\s*/, "");
const skip = compiled.success
  ? undefined
  : download
  ? `deno compile needs to download its runtime (${download.trim()}), which this machine cannot reach`
  : `deno compile failed here: ${lines.find((line) => /error/i.test(line))?.trim() ?? "no reason given"}`;
if (skip) console.log(`compile_test.ts: skipped: ${skip}`);

async function runBinary(args: string[], env: Record<string, string> = {}) {
  const output = await new Deno.Command(binary, { args, env: { NO_COLOR: "1", ...env }, cwd: workDir, stdin: "null" })
    .output();
  const decode = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
  return { code: output.code, stdout: decode(output.stdout), stderr: decode(output.stderr) };
}

Deno.test({
  name: "the compiled binary prints its version",
  ignore: skip !== undefined,
  fn: async () => {
    const result = await runBinary(["--version"]);
    assertEquals(result.code, EXIT.ok);
    assertEquals(result.stdout, `oauth-login ${VERSION}\n`);
  },
});

Deno.test({
  name: "the compiled binary logs in against the mock issuer and then answers token from its cache",
  ignore: skip !== undefined,
  fn: async () => {
    const mock = serveMockIssuer();
    try {
      const env = {
        OAUTH_LOGIN_CACHE: `${workDir}/cache`,
        // A scripted browser: curl follows the redirects to the tool's callback, as a browser would.
        BROWSER: "curl --silent --location --max-time 20 --output /dev/null",
        DISPLAY: ":0",
      };
      const flags = ["--issuer", mock.issuer, "--client-id", PUBLIC_CLIENT.id];
      const login = await runBinary(["login", ...flags, "--timeout", "30"], env);
      assertEquals(login.code, EXIT.ok, login.stderr);
      assertStringIncludes(login.stderr, "Logged in as alice@example.com\n");
      const token = await runBinary(["token", ...flags], env);
      assertEquals(token.code, EXIT.ok, token.stderr);
      assertEquals(token.stdout, `${[...mock.accessTokens.keys()][0]}\n`);
    } finally {
      await mock.close();
    }
  },
});
