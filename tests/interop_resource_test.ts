/**
 * Issue 20 against the real OpenID provider of the interop suite (oidc-provider 8 under Node), started
 * with open dynamic client registration (RFC 7591) and resource indicators (RFC 8707) for an API of our
 * own (`tests/_resource_server.ts`): it names the provider in its metadata (RFC 9728), takes the JWT
 * access tokens the provider issues for it (checked against the provider's keys), and asks for more on
 * chosen paths. login.ts runs as a subprocess, as a person runs it, with nothing configured: no issuer,
 * no client id, no .env, no profile; the interop suite's scripted browser signs in.
 *
 * Needs tests/interop/prepare.sh (npm ci); without it every test skips with a printed reason (in CI, fails).
 */
import { interopSuite, type Running, startProvider, withRunning } from "./_interop.ts";
import { type ResourceServer, serveResourceServer, type TokenInfo } from "./_resource_server.ts";
import { fileURLToPath } from "node:url";
import { assert, assertEquals, assertStringIncludes } from "./assert.ts";

const path = (relative: string) => fileURLToPath(new URL(relative, import.meta.url));
const LOGIN = path("../login.ts");
const CONFIG = path("../deno.json");
const BROWSER = path("./interop/browser.mjs");
const PERMISSIONS = ["--allow-net", "--allow-env", "--allow-read", "--allow-write", "--allow-run"];
const TOOL_MS = 30_000;

const interop = interopSuite("interop_resource_test.ts");

// ── The provider and the API ────────────────────────────────────────────────────────────────────

interface ProviderInfo {
  issuer: string;
  account: { sub: string; preferred_username: string };
}

type Provider = Running<ProviderInfo>;

/** What a JWT access token of the provider grants, its signature checked with the provider's keys; else undefined. */
async function verifier(issuer: string): Promise<(token: string) => Promise<TokenInfo | undefined>> {
  const response = await fetch(`${issuer}/jwks`);
  const { keys } = await response.json();
  const key = await crypto.subtle.importKey("jwk", keys[0], { name: "ECDSA", namedCurve: "P-256" }, false, ["verify"]);
  const decode = (part: string) =>
    Uint8Array.from(atob(part.replace(/-/g, "+").replace(/_/g, "/")), (c) => c.charCodeAt(0));
  return async (token) => {
    const [header, payload, signature] = token.split(".");
    if (!signature) return undefined;
    const valid = await crypto.subtle.verify(
      { name: "ECDSA", hash: "SHA-256" },
      key,
      decode(signature),
      new TextEncoder().encode(`${header}.${payload}`),
    );
    const claims = JSON.parse(new TextDecoder().decode(decode(payload)));
    if (!valid || claims.iss !== issuer || claims.exp * 1000 <= Date.now()) return undefined;
    return { scope: claims.scope ?? "", audience: claims.aud, authTime: claims.auth_time, sub: claims.sub };
  };
}

/**
 * An API (at /mcp, whose 401 names the scope mcp:read) and the provider that hands out its tokens, with
 * open registration; `fn` gets both and a temporary folder.
 */
async function withApi(fn: (provider: Provider, api: ResourceServer, work: string) => Promise<void>): Promise<void> {
  let check: (token: string) => Promise<TokenInfo | undefined> = () => Promise.resolve(undefined);
  const api = serveResourceServer({
    challengeScope: "mcp:read",
    scopesSupported: ["mcp:read", "mcp:admin"],
    rules: { "/admin": { scope: "mcp:admin" } },
    verify: (token) => check(token),
  });
  try {
    await withRunning(
      () => startProvider<ProviderInfo>(["--registration", "--api", api.resource]),
      "oauth-login-interop-resource-",
      async (provider: Provider, work) => {
        api.authorizationServers = [provider.issuer];
        check = await verifier(provider.issuer);
        await fn(provider, api, work);
      },
    );
  } finally {
    await api.close();
  }
}

// ── The tool ────────────────────────────────────────────────────────────────────────────────────

interface ToolRun {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs login.ts with nothing configured (no OAUTH_* variable, an empty folder) and the scripted browser. */
async function tool(provider: Provider, work: string, args: string[]): Promise<ToolRun> {
  const base: Record<string, string> = {};
  for (const [name, value] of Object.entries(Deno.env.toObject())) {
    if (!/^(OAUTH_|INTEROP_|BROWSER$|XDG_CONFIG_HOME$)/.test(name)) base[name] = value;
  }
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--config", CONFIG, ...PERMISSIONS, LOGIN, ...args],
    cwd: work,
    env: {
      ...base,
      NO_COLOR: "1",
      OAUTH_LOGIN_CACHE: `${work}/cache`,
      OAUTH_LOGIN_CONFIG: `${work}/no-profiles.toml`,
      BROWSER: `node ${BROWSER}`,
      INTEROP_LOGIN: provider.account.sub,
      INTEROP_DECISION: "approve",
      INTEROP_BROWSER_OUT: `${work}/page.json`,
    },
    clearEnv: true,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const kill = setTimeout(() => child.kill("SIGKILL"), TOOL_MS);
  const output = await child.output();
  clearTimeout(kill);
  const decoder = new TextDecoder();
  // Prose on stderr is wrapped at 80 columns: the tests read it as one line of words.
  const stderr = decoder.decode(output.stderr).replace(/[ \n]+/g, " ");
  return { code: output.code, stdout: decoder.decode(output.stdout), stderr };
}

/** The MCP `initialize` request, as the README shows it. */
const INITIALIZE = [
  "-X",
  "POST",
  "-H",
  "Content-Type: application/json",
  "-H",
  "Accept: application/json, text/event-stream",
  "-d",
  '{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"oauth-login","version":"0.1.0"}}}',
];

/** The API's requests: method, path and whether a token came. */
function apiLog(api: ResourceServer): string[] {
  return api.requests.map((r) => `${r.method} ${r.path}${r.authorization ? " (token)" : ""}`);
}

// ── The cases ───────────────────────────────────────────────────────────────────────────────────

interop(
  "fetch an MCP server with nothing configured: the provider its metadata names, a registered client, a sign-in for it; the next fetch signs in no more",
  async () => {
    await withApi(async (provider, api, work) => {
      const first = await tool(provider, work, ["fetch", "--interactive", ...INITIALIZE, api.url]);
      assertEquals(first.code, 0, first.stderr);
      assertEquals(JSON.parse(first.stdout).result.serverInfo.name, "stand-in");
      const host = new URL(provider.issuer).host;
      assert(
        first.stderr.startsWith(
          `The API at ${new URL(api.url).host} takes tokens from ${provider.issuer}: signing in there ` +
            `note: Registered this tool as a client at ${host} (RFC 7591); it is kept for later sign-ins ` +
            `Opening your browser to sign in at ${host} ... `,
        ),
        first.stderr,
      );
      // oidc-provider grants offline_access only with prompt=consent (OpenID Connect Core §11): it says so.
      assertStringIncludes(
        first.stderr,
        `Logged in as ${provider.account.preferred_username} warning: The server did not grant offline_access`,
      );
      assertEquals(apiLog(api), ["POST /mcp", "GET /.well-known/oauth-protected-resource/mcp", "POST /mcp (token)"]);
      const rpc = api.requests.at(-1)!;
      assertEquals(JSON.parse(rpc.body).method, "initialize", "the same request, now with the token");

      // The token is the provider's JWT for this API, with the scope its 401 named.
      const token = await tool(provider, work, ["token", "--resource", api.url, "--format", "json"]);
      assertEquals(token.code, 0, token.stderr);
      const claims = JSON.parse(
        atob(JSON.parse(token.stdout).access_token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/")),
      );
      assertEquals(claims.aud, api.resource);
      assertEquals(claims.scope, "mcp:read");

      const second = await tool(provider, work, ["fetch", ...INITIALIZE, api.url]);
      assertEquals(second.code, 0, second.stderr);
      assertEquals(second.stderr, "", "no sign-in, nothing to say");
      assertEquals(apiLog(api).at(-1), "POST /mcp (token)");
      assertEquals(apiLog(api).length, 4);
    });
  },
);

interop("insufficient_scope at the provider: one step-up for mcp:admin, then the API answers", async () => {
  await withApi(async (provider, api, work) => {
    const result = await tool(provider, work, ["fetch", "--interactive", `${api.url}/admin`]);
    assertEquals(result.code, 0, result.stderr);
    assertEquals(JSON.parse(result.stdout).scope.split(" ").sort(), ["mcp:admin", "mcp:read"]);
    assertStringIncludes(
      result.stderr,
      `The API at ${
        new URL(api.url).host
      } asks for the scope "mcp:admin" (This needs the scope mcp:admin): signing in again `,
    );
    assertEquals(apiLog(api).filter((line) => line.endsWith("(token)")), [
      "GET /mcp/admin (token)",
      "GET /mcp/admin (token)",
    ]);
    assert((result.stderr.match(/Logged in as /g) ?? []).length === 2, result.stderr);
  });
});

interop(
  "insufficient_user_authentication with max_age=0 at the provider: one fresh sign-in, then the API answers",
  async () => {
    await withApi(async (provider, api, work) => {
      const first = await tool(provider, work, ["fetch", "--interactive", api.url]);
      assertEquals(first.code, 0, first.stderr);
      // From now on /recent wants a sign-in made after this second (auth_time is in whole seconds).
      const since = Math.floor(Date.now() / 1000) + 1;
      api.rules["/recent"] = { freshSince: since };
      while (Date.now() < since * 1000) await new Promise((resolve) => setTimeout(resolve, 50));
      const result = await tool(provider, work, ["fetch", "--interactive", `${api.url}/recent`]);
      assertEquals(result.code, 0, result.stderr);
      assertEquals(JSON.parse(result.stdout).path, "/mcp/recent");
      assertStringIncludes(
        result.stderr,
        `The API at ${new URL(api.url).host} asks for max_age 0 (A stronger sign-in is required): signing in again `,
      );
    });
  },
);
