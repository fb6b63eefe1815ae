/**
 * Interop tests against a real, OpenID-certified authorization server: oidc-provider 8 under Node
 * (tests/interop/provider.mjs), with a scripted browser (tests/interop/browser.mjs) that signs in
 * on its development pages. login.ts runs as a subprocess, exactly as a person runs it, and the
 * tests check what that person sees: the exit code, the terminal, `--json` and the final page.
 *
 * Needs `tests/interop/prepare.sh` (npm ci); without it every test skips with a printed reason, or
 * fails with it where `CI` is set (tests/_optional.ts): CI runs the prepare script.
 */
import { fileURLToPath } from "node:url";
import { assert, assertEquals, assertMatch, assertNotMatch, assertStringIncludes } from "./assert.ts";
import { inCI, optionalTest } from "./_optional.ts";
import { deadline, type Running, startProvider as startProvider_, withRunning } from "./_interop.ts";
import { run as runInProcess } from "./_harness.ts";

// ── Setup and gates ─────────────────────────────────────────────────────────────────────────────

const path = (relative: string) => fileURLToPath(new URL(relative, import.meta.url));
const LOGIN = path("../login.ts");
const CONFIG = path("../deno.json");
const BROWSER = path("./interop/browser.mjs");
const INSTALLED = path("./interop/node_modules/oidc-provider/package.json");

/** What login.ts needs to run, and nothing more: the tests are about what a person gets. */
const PERMISSIONS = ["--allow-net", "--allow-env", "--allow-read", "--allow-write", "--allow-run"];
/** Bounds on every child process, so a hang fails the test instead of the run. */
const TOOL_MS = 30_000;
const EXIT = { ok: 0, failure: 1, denied: 3, loginRequired: 4 } as const;

function nodeVersion(): string | undefined {
  try {
    const { success, stdout } = new Deno.Command("node", { args: ["--version"], stderr: "null" }).outputSync();
    return success ? new TextDecoder().decode(stdout).trim() : undefined;
  } catch {
    return undefined;
  }
}

function installed(): boolean {
  try {
    return Deno.statSync(INSTALLED).isFile;
  } catch {
    return false;
  }
}

const SKIP_ALL = !nodeVersion()
  ? "node is not on PATH, and the interop tests run oidc-provider under Node"
  : !installed()
  ? "tests/interop/node_modules is missing: run tests/interop/prepare.sh (CI runs it through .ci/prepare)"
  : undefined;
if (SKIP_ALL) {
  console.log(`interop_test.ts: every interop test ${inCI() ? "fails (CI is set)" : "is skipped"}: ${SKIP_ALL}`);
}

/** An interop test: skipped (outside CI) or failed (in CI) with the reason when oidc-provider cannot run. */
function interop(name: string, fn: () => Promise<void>): void {
  Deno.test(optionalTest({ name, fn }, SKIP_ALL));
}

// ── Harness: the provider ───────────────────────────────────────────────────────────────────────

interface ProviderInfo {
  issuer: string;
  port: number;
  clients: { public: { id: string }; confidential: { id: string; secret: string } };
  account: { sub: string; preferred_username: string; email: string; name: string };
}

type Provider = Running<ProviderInfo> & {
  /** Introspects a token as the confidential client: the server's own word on whether it is live. */
  introspect(token: string): Promise<Record<string, unknown>>;
};

async function startProvider(args: string[] = []): Promise<Provider> {
  const running = await startProvider_<ProviderInfo>(args);
  return {
    ...running,
    async introspect(token) {
      const { id, secret } = running.clients.confidential;
      const response = await fetch(`${running.issuer}/token/introspection`, {
        method: "POST",
        headers: { authorization: `Basic ${btoa(`${id}:${secret}`)}`, accept: "application/json" },
        body: new URLSearchParams({ token }),
      });
      assertEquals(response.status, 200, "introspection answers 200");
      return await response.json();
    },
  };
}

/** Runs `fn` with a fresh provider and a temporary folder; always stops both. */
function withProvider(args: string[], fn: (provider: Provider, work: string) => Promise<void>): Promise<void> {
  return withRunning(() => startProvider(args), "oauth-login-interop-", fn);
}

// ── Harness: the tool and the browser ───────────────────────────────────────────────────────────

/** What the scripted browser ended on (see tests/interop/browser.mjs). */
interface Page {
  status: number;
  title: string;
  text: string;
  url: string;
  visited: string[];
  error?: string;
}

interface ToolRun {
  code: number;
  stdout: string;
  stderr: string;
  /** The last page the scripted browser saw, when login.ts started it. */
  page?: Page;
}

interface ToolOptions {
  env?: Record<string, string>;
  /** The login name typed on the sign-in page (default: the account's `sub`). */
  login?: string;
  /** What the person does on the consent page. */
  decision?: "approve" | "deny";
  /** The browser command; default: the scripted browser. */
  browser?: string;
}

/** The environment of the tool: this one without OAUTH_* settings, plus the test's. */
function toolEnv(provider: Provider, work: string, options: ToolOptions): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [name, value] of Object.entries(Deno.env.toObject())) {
    if (!/^(OAUTH_|INTEROP_|BROWSER$)/.test(name)) env[name] = value;
  }
  return {
    ...env,
    NO_COLOR: "1",
    OAUTH_LOGIN_CACHE: `${work}/cache`,
    OAUTH_TOKEN_STORAGE: "file", // as the harness: never the keychain of the machine running the tests
    BROWSER: options.browser ?? `node ${BROWSER}`,
    INTEROP_LOGIN: options.login ?? provider.account.sub,
    INTEROP_DECISION: options.decision ?? "approve",
    INTEROP_BROWSER_OUT: `${work}/page.json`,
    ...options.env,
  };
}

/** The command line: `deno run … login.ts ARGS`, in the temporary folder (so no ./.env is read). */
function toolCommand(args: string[], env: Record<string, string>, work: string): Deno.Command {
  return new Deno.Command(Deno.execPath(), {
    args: ["run", "--config", CONFIG, ...PERMISSIONS, LOGIN, ...args],
    cwd: work,
    env,
    clearEnv: true,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  });
}

async function readPage(work: string): Promise<Page | undefined> {
  try {
    const text = await Deno.readTextFile(`${work}/page.json`);
    await Deno.remove(`${work}/page.json`);
    return JSON.parse(text);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    throw error;
  }
}

/** Runs login.ts to the end (bounded) and collects what the person saw. */
async function tool(provider: Provider, work: string, args: string[], options: ToolOptions = {}): Promise<ToolRun> {
  const child = toolCommand(args, toolEnv(provider, work, options), work).spawn();
  const limit = deadline(TOOL_MS, () => child.kill("SIGKILL"));
  const output = await child.output();
  limit.cancel();
  const decoder = new TextDecoder();
  return {
    code: output.code,
    stdout: decoder.decode(output.stdout),
    stderr: decoder.decode(output.stderr),
    page: await readPage(work),
  };
}

/** `--issuer I --client-id C` for the public (default) or confidential client. */
function client(provider: Provider, which: "public" | "confidential" = "public"): string[] {
  return ["--issuer", provider.issuer, "--client-id", provider.clients[which].id];
}

/** A login through the browser, bounded by login.ts's own --timeout too. */
function login(provider: Provider, work: string, args: string[], options?: ToolOptions): Promise<ToolRun> {
  return tool(provider, work, ["login", ...args, "--timeout", "20"], options);
}

function parseJson(run: ToolRun): Record<string, unknown> {
  assertMatch(run.stdout, /^\{.*\}\n$/s, `one JSON object and a newline on stdout; stderr was:\n${run.stderr}`);
  return JSON.parse(run.stdout);
}

/** Logs in with `--prompt consent` (oidc-provider's condition for offline_access) and returns the --json output. */
async function loginForRefresh(provider: Provider, work: string): Promise<Record<string, unknown>> {
  const run = await login(provider, work, [...client(provider), "--prompt", "consent", "--json"]);
  assertEquals(run.code, EXIT.ok, run.stderr);
  const json = parseJson(run);
  assertEquals(typeof json.refresh_token, "string", "--prompt consent gave a refresh token");
  return json;
}

function assertSignedIn(run: ToolRun, name: string): void {
  assertEquals(run.code, EXIT.ok, `exit code; stderr was:\n${run.stderr}`);
  assertStringIncludes(run.stderr, `Logged in as ${name}\n`);
  assert(run.page, "the scripted browser reported its last page");
  assertEquals(run.page.error, undefined, `the browser failed: ${run.page.error}`);
  assertEquals(run.page.status, 200, run.page.text);
  assertEquals(run.page.title, "Signed in");
  assertStringIncludes(run.page.text, `Signed in as ${name} — you can close this tab`);
}

/** Every file under the cache folder, as text. */
/**
 * Makes the cached access tokens look expired, as waiting would: `token` refreshes a token only once it
 * is due (within min(--min-ttl, half its lifetime) of its expiry), never one just issued.
 */
async function expireCachedTokens(work: string): Promise<void> {
  for await (const entry of Deno.readDir(`${work}/cache`)) {
    if (!entry.isFile || !entry.name.endsWith(".json")) continue;
    const file = `${work}/cache/${entry.name}`;
    await Deno.writeTextFile(file, JSON.stringify({ ...JSON.parse(await Deno.readTextFile(file)), expiresAt: 0 }));
  }
}

async function cacheContents(work: string): Promise<string> {
  let all = "";
  const walk = async (dir: string): Promise<void> => {
    try {
      for await (const entry of Deno.readDir(dir)) {
        const file = `${dir}/${entry.name}`;
        if (entry.isDirectory) await walk(file);
        else if (entry.isFile) all += await Deno.readTextFile(file);
      }
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    }
  };
  await walk(`${work}/cache`);
  return all;
}

// ── Login with the browser ──────────────────────────────────────────────────────────────────────

interop("login: a public native client signs in over an ephemeral loopback port (RFC 8252 §7.3)", async () => {
  await withProvider([], async (provider, work) => {
    const run = await login(provider, work, client(provider));
    assertSignedIn(run, provider.account.preferred_username);
    assertEquals(run.stdout, "", "nothing on stdout without --json");
    assertStringIncludes(run.stderr, `Opening your browser to sign in at 127.0.0.1:${provider.port} ...\n`);

    // The browser started at the tool's short loopback address, went through the real provider's
    // sign-in and consent pages, and came back to /callback on that same port with `iss`.
    const page = run.page!;
    const start = new URL(page.visited[0].replace(/^GET /, ""));
    assertMatch(start.href, /^http:\/\/127\.0\.0\.1:\d+\/[A-Za-z0-9_-]{16}$/); // a random path: START_PATH
    assertStringIncludes(run.stderr, `If it does not open, visit: ${start.href}\n`);
    assertEquals(page.visited[1], `GET ${provider.issuer}/auth`);
    assert(page.visited.some((v) => v.startsWith(`POST ${provider.issuer}/interaction/`)), "signed in on a form");
    const callback = new URL(page.url);
    assertEquals(`${callback.origin}${callback.pathname}`, `${start.origin}/callback`);
    assertEquals(callback.searchParams.get("iss"), provider.issuer, "RFC 9207 iss in the authorization response");
  });
});

/**
 * The scripted browser (tests/interop/browser.mjs) on `url`, run by the test itself; stops before an
 * address that starts with `stopAt`, which it reports.
 */
async function browseUntil(url: string, stopAt: string, login: string): Promise<Record<string, unknown>> {
  const output = await new Deno.Command("node", {
    args: [BROWSER, url],
    env: { INTEROP_LOGIN: login, INTEROP_STOP_AT: stopAt },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  return JSON.parse(new TextDecoder().decode(output.stdout));
}

/** Moves the provider's clock (started with --clock) `seconds` ahead of the real one. */
async function setProviderClock(provider: Provider, seconds: number): Promise<void> {
  const response = await fetch(`${provider.issuer}/__clock`, { method: "POST", body: String(seconds) });
  await response.body?.cancel();
  assertEquals(response.status, 204, "the provider's clock moved");
}

// In process (the harness's run()), because the tool's clock must move with the provider's: a
// pushed request lives 60 s at oidc-provider (a fixed lifetime), and nobody waits two real minutes.
interop(
  "login: the printed start address still works two minutes into the wait (the expired PAR request is pushed again)",
  async () => {
    await withProvider(["--clock"], async (provider) => {
      let offset = 0;
      const result = await runInProcess(["login", ...client(provider), "--timeout", "300"], {
        now: () => Date.now() + offset,
        boundMs: 20_000,
        browser: async (start) => {
          // The person opens the printed address two minutes later: both clocks move on, nobody sleeps.
          offset = 120_000;
          await setProviderClock(provider, 120);
          const callback = `${new URL(start).origin}/callback`;
          const page = await browseUntil(start, callback, provider.account.sub);
          // The provider's clock goes back before the tool's code exchange, whose ID token must carry
          // times the tool's library (on the real clock) accepts.
          await setProviderClock(provider, 0);
          assertEquals(page.error, undefined, `the browser failed: ${page.error}`);
          assert(typeof page.stoppedAt === "string", `the sign-in reached the callback: ${JSON.stringify(page)}`);
          const response = await fetch(String(page.stoppedAt), { redirect: "manual" });
          const body = await response.text();
          return { visited: [start, String(page.stoppedAt)], status: response.status, body, headers: response.headers };
        },
      });
      assertEquals(result.code, EXIT.ok, result.stderr);
      assertStringIncludes(result.stderr, `Logged in as ${provider.account.preferred_username}\n`);
      assertEquals(result.visit?.status, 200);
      assertStringIncludes(result.visit?.body ?? "", "Signed in as");
      await Deno.remove(result.home, { recursive: true });
    });
  },
);

interop("login --json: prints the identity and a live access token from the real provider", async () => {
  await withProvider([], async (provider, work) => {
    const run = await login(provider, work, [...client(provider), "--json"]);
    assertSignedIn(run, provider.account.preferred_username);
    const json = parseJson(run);
    assertEquals(json.issuer, provider.issuer);
    assertEquals(json.user, provider.account.preferred_username);
    assertEquals(json.sub, provider.account.sub);
    assertEquals(typeof json.access_token, "string");
    assertMatch(String(json.token_type), /^bearer$/i);
    assertEquals(typeof json.id_token, "string");
    assert(Date.parse(String(json.expires_at)) > Date.now() + 3000_000, "expires_at is about an hour ahead");

    const info = await provider.introspect(String(json.access_token));
    assertEquals(info.active, true, "the provider says the access token is active");
    assertEquals(info.client_id, provider.clients.public.id);
    assertEquals(info.sub, provider.account.sub);
    assertMatch(String(info.scope), /\bopenid\b/);
  });
});

interop("login: a confidential client (client_secret_basic) on a fixed registered redirect URI", async () => {
  const port = freePort();
  const redirectUri = `http://127.0.0.1:${port}/cb`;
  await withProvider(["--confidential-redirect", redirectUri], async (provider, work) => {
    const { secret } = provider.clients.confidential;
    const run = await login(provider, work, [
      ...client(provider, "confidential"),
      "--redirect-uri",
      redirectUri,
      "--json",
    ], {
      env: { OAUTH_CLIENT_SECRET: secret },
    });
    assertEquals(run.code, EXIT.ok, `exit code; stderr was:\n${run.stderr}`);
    assertNotMatch(run.stderr, /--client-secret is visible/, "the secret came from the environment");
    assert(!run.stderr.includes(secret) && !run.stdout.includes(secret), "the secret is never printed");

    // Who the person is: introspection gives no username here, so the name comes from the ID token.
    assertSignedIn(run, provider.account.preferred_username);
    const callback = new URL(run.page!.url);
    assertEquals(`${callback.origin}${callback.pathname}`, redirectUri);
    // The start address: a random path of 16 base64url characters (the harness's START_PATH).
    assertMatch(run.page!.visited[0], new RegExp(`^GET http://127\\.0\\.0\\.1:${port}/[A-Za-z0-9_-]{16}$`));

    const json = parseJson(run);
    assertEquals(json.sub, provider.account.sub);
    const info = await provider.introspect(String(json.access_token));
    assertEquals(info.active, true);
    assertEquals(info.client_id, provider.clients.confidential.id);
  });
});

interop("login: a confidential client shows the person's name, as the public client does", async () => {
  const port = freePort();
  const redirectUri = `http://127.0.0.1:${port}/cb`;
  await withProvider(["--confidential-redirect", redirectUri], async (provider, work) => {
    const run = await login(provider, work, [...client(provider, "confidential"), "--redirect-uri", redirectUri], {
      env: { OAUTH_CLIENT_SECRET: provider.clients.confidential.secret },
    });
    assertSignedIn(run, provider.account.preferred_username);
  });
});

interop("login: cancelling on the provider's consent page is access_denied, exit 3", async () => {
  await withProvider([], async (provider, work) => {
    const run = await login(provider, work, [...client(provider), "--json"], { decision: "deny" });
    assertEquals(run.code, EXIT.denied, `exit code; stderr was:\n${run.stderr}`);
    assertEquals(run.stdout, "");
    assertStringIncludes(run.stderr, 'error: Sign-in was declined: the server answered "access_denied"');
    assertEquals(run.page?.status, 400);
    assertEquals(run.page?.title, "Sign-in cancelled");
  });
});

interop("login --param login_hint=…: the parameter reaches the provider's sign-in page", async () => {
  await withProvider([], async (provider, work) => {
    // The sign-in form comes pre-filled with the hint, and the scripted browser keeps what is there.
    const run = await login(provider, work, [...client(provider), "--param", "login_hint=hinted-user", "--json"], {
      login: "typed-user",
    });
    assertEquals(run.code, EXIT.ok, `exit code; stderr was:\n${run.stderr}`);
    assertEquals(parseJson(run).sub, "hinted-user");
  });
});

interop("login --prompt consent: offline_access is granted and a refresh token issued (OIDC Core §11)", async () => {
  await withProvider([], async (provider, work) => {
    const run = await login(provider, work, [...client(provider), "--prompt", "consent", "--json"]);
    assertSignedIn(run, provider.account.preferred_username);
    const json = parseJson(run);
    assertEquals(typeof json.refresh_token, "string", "a refresh token");
    assertMatch(String(json.scope), /\boffline_access\b/);
    assertEquals((await provider.introspect(String(json.refresh_token))).active, true);
  });
});

// ── token, whoami, logout (issue 3) ─────────────────────────────────────────────────────────────

interop("token: prints the cached access token while it is fresh", async () => {
  await withProvider([], async (provider, work) => {
    const signedIn = await login(provider, work, [...client(provider), "--json"]);
    assertEquals(signedIn.code, EXIT.ok, signedIn.stderr);
    const { access_token } = parseJson(signedIn);
    const run = await tool(provider, work, ["token", ...client(provider)]);
    assertEquals(run.code, EXIT.ok, `exit code; stderr was:\n${run.stderr}`);
    assertEquals(run.stdout, `${access_token}\n`);
    assertEquals(run.page, undefined, "no browser was opened");
  });
});

interop("token: refreshes with the rotated refresh token when the access token expires soon", async () => {
  // Each refresh below is forced by rewriting the cached entry as expired (half a 30 s lifetime is no longer due).
  await withProvider(["--access-token-ttl", "30"], async (provider, work) => {
    const first = await loginForRefresh(provider, work);

    await expireCachedTokens(work);
    const refreshed = await tool(provider, work, ["token", ...client(provider)]);
    assertEquals(refreshed.code, EXIT.ok, `exit code; stderr was:\n${refreshed.stderr}`);
    assertMatch(refreshed.stdout, /^\S+\n$/, "one token and a newline");
    const second = refreshed.stdout.trim();
    assert(second !== first.access_token, "a new access token");
    assertEquals((await provider.introspect(second)).active, true, "the new access token is live");
    assertEquals(
      (await provider.introspect(String(first.refresh_token))).active,
      false,
      "the provider rotated the refresh token, so the first one is spent",
    );

    // A second refresh works only if the rotated refresh token was saved in the cache; reusing the
    // spent one would make oidc-provider revoke the whole grant (refresh token reuse detection).
    await expireCachedTokens(work);
    const again = await tool(provider, work, ["token", ...client(provider)]);
    assertEquals(again.code, EXIT.ok, `exit code; stderr was:\n${again.stderr}`);
    const third = again.stdout.trim();
    assert(third !== second, "refreshed again");
    assertEquals((await provider.introspect(third)).active, true);
    assertEquals((await provider.introspect(second)).active, true, "the grant survived: no reuse was detected");
    assert(!(await cacheContents(work)).includes(String(first.refresh_token)), "the spent refresh token is gone");

    const cached = await tool(provider, work, ["token", ...client(provider), "--min-ttl", "0"]);
    assertEquals(cached.code, EXIT.ok, cached.stderr);
    assertEquals(cached.stdout, `${third}\n`, "--min-ttl 0 takes the cached token as it is");
  });
});

interop("token: a refresh token revoked at the provider means login required (exit 4)", async () => {
  await withProvider(["--access-token-ttl", "30"], async (provider, work) => {
    const { refresh_token } = await loginForRefresh(provider, work);
    // The session ends at the server (an admin, another device's logout, a password change...).
    const revoked = await fetch(`${provider.issuer}/token/revocation`, {
      method: "POST",
      body: new URLSearchParams({ client_id: provider.clients.public.id, token: String(refresh_token) }),
    });
    await revoked.body?.cancel();
    assertEquals(revoked.status, 200);

    await expireCachedTokens(work);
    const run = await tool(provider, work, ["token", ...client(provider)]);
    assertEquals(run.code, EXIT.loginRequired, `exit code; stderr was:\n${run.stderr}`);
    assertEquals(run.stdout, "", "no token on stdout");
    assertStringIncludes(run.stderr, '"invalid_grant"', "says what the server answered");
    assertEquals(run.page, undefined, "no browser was opened without --interactive");
    assert(!(await cacheContents(work)).includes(String(refresh_token)), "the dead tokens were removed");
  });
});

interop("token --interactive: signs in with the browser when nothing is cached", async () => {
  await withProvider([], async (provider, work) => {
    const run = await tool(provider, work, ["token", ...client(provider), "--interactive", "--timeout", "20"]);
    assertEquals(run.code, EXIT.ok, `exit code; stderr was:\n${run.stderr}`);
    assertMatch(run.stdout, /^\S+\n$/, "only the token and a newline on stdout");
    assertEquals((await provider.introspect(run.stdout.trim())).active, true);
    assertEquals(run.page?.title, "Signed in", JSON.stringify(run.page));
    const again = await tool(provider, work, ["token", ...client(provider)]);
    assertEquals(again.stdout, run.stdout, "the token was cached");
  });
});

interop("whoami --json: says who is logged in, at which issuer, with which scopes", async () => {
  await withProvider([], async (provider, work) => {
    const signedIn = await login(provider, work, client(provider));
    assertEquals(signedIn.code, EXIT.ok, signedIn.stderr);
    const run = await tool(provider, work, ["whoami", ...client(provider), "--json"]);
    assertEquals(run.code, EXIT.ok, `exit code; stderr was:\n${run.stderr}`);
    const json = parseJson(run);
    assertEquals(json.issuer, provider.issuer);
    assertEquals(json.user, provider.account.preferred_username);
    assertEquals(json.sub, provider.account.sub);
    assertEquals(json.client_id, provider.clients.public.id);
    assertMatch(String(json.scope), /\bopenid\b/, "the scopes the provider granted");
    assert(Date.parse(String(json.expires_at)) > Date.now() + 3000_000, "expires in about an hour");
    assertEquals(json.expired, false);
    assertEquals(run.page, undefined, "no browser was opened");
  });
});

interop("logout: revokes the tokens at the provider (RFC 7009) and forgets the login", async () => {
  await withProvider([], async (provider, work) => {
    const extra = ["--prompt", "consent"];
    const signedIn = await login(provider, work, [...client(provider), ...extra, "--json"]);
    assertEquals(signedIn.code, EXIT.ok, signedIn.stderr);
    const tokens = parseJson(signedIn);
    const accessToken = String(tokens.access_token);
    assertStringIncludes(await cacheContents(work), accessToken, "the login was cached");

    const run = await tool(provider, work, ["logout", ...client(provider)]);
    assertEquals(run.code, EXIT.ok, `exit code; stderr was:\n${run.stderr}`);
    assertEquals((await provider.introspect(accessToken)).active, false, "the access token was revoked");
    if (typeof tokens.refresh_token === "string") {
      assertEquals((await provider.introspect(tokens.refresh_token)).active, false, "the refresh token too");
    }
    assert(!(await cacheContents(work)).includes(accessToken), "the cache entry was deleted");

    const whoami = await tool(provider, work, ["whoami", ...client(provider), "--json"]);
    assertEquals(whoami.code, EXIT.loginRequired, `whoami after logout:\n${whoami.stdout}${whoami.stderr}`);
    // No terminal here, so `token` does not start a sign-in: it says one is needed.
    const token = await tool(provider, work, ["token", ...client(provider)]);
    assertEquals(token.code, EXIT.loginRequired, `token after logout:\n${token.stderr}`);
    assertEquals(token.stdout, "");
    assertEquals(token.page, undefined, "no browser was opened");
  });
});

// ── The device flow (issue 4) ───────────────────────────────────────────────────────────────────

interop("login --flow device: the person enters the code on the provider's page (RFC 8628)", async () => {
  await withProvider([], async (provider, work) => {
    // A browser elsewhere: whatever login.ts opens goes nowhere, and the person reads the terminal.
    const env = toolEnv(provider, work, { browser: "node -e 0" });
    const args = ["login", ...client(provider), "--flow", "device", "--timeout", "20"];
    const child = toolCommand(args, env, work).spawn();
    const limit = deadline(TOOL_MS, () => child.kill("SIGKILL"));
    const stdout = new Response(child.stdout).text();
    const reader = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
    let stderr = "";
    let page: Page | undefined;
    let code = -1;
    try {
      const userCodePattern = /\b[BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4}\b/;
      const address = new RegExp(`${provider.issuer.replaceAll(".", "\\.")}/device\\S*`);
      while (!(userCodePattern.test(stderr) && address.test(stderr))) {
        const { value, done } = await reader.read();
        if (done) break;
        stderr += value;
      }
      const userCode = stderr.match(userCodePattern)?.[0];
      const where = stderr.match(address)?.[0].replace(/[).,;]+$/, "");
      assert(userCode && where, `the terminal shows a user code and where to enter it; stderr was:\n${stderr}`);

      const browser = await new Deno.Command("node", {
        args: [BROWSER, where],
        env: { ...env, INTEROP_USER_CODE: userCode, INTEROP_BROWSER_OUT: "" },
        stdin: "null",
        stdout: "piped",
        stderr: "inherit",
      }).output();
      page = JSON.parse(new TextDecoder().decode(browser.stdout));
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        stderr += value;
      }
    } finally {
      await reader.cancel().catch(() => {});
      code = (await child.status).code;
      limit.cancel();
      await stdout;
    }
    assertEquals(code, EXIT.ok, `exit code; stderr was:\n${stderr}`);
    assertEquals(page?.error, undefined, `the browser failed: ${page?.error}`);
    assertEquals(page?.title, "Sign-in Success", page?.text);
    assertStringIncludes(stderr, `Logged in as ${provider.account.preferred_username}\n`);
  });
});

// ── Helpers ─────────────────────────────────────────────────────────────────────────────────────

/** A port that is free now (the OS picks it). */
function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

// ── Issue 13: a rejected sign-in request ends the login at once ───────────────────────────────
// oidc-provider offers pushed authorization requests (RFC 9126), so the tool uses them by default;
// `--no-par` sends the full URL, which the tool checks once before opening the browser.

/** Exit 2: usage or configuration (a request the server rejects is the configuration's fault). */
const EXIT_USAGE = 2;

/** The tool wraps its prose to 80 columns: the lines joined again, for matching sentences. */
function unwrapped(text: string): string {
  return text.replace(/\n +/g, " ");
}

for (const par of [true, false]) {
  const how = par ? "with PAR" : "with --no-par (the preflight)";
  interop(`login ${how}: a wrong client id ends within seconds, exit 2, with the provider's words`, async () => {
    await withProvider([], async (provider, work) => {
      const started = performance.now();
      const run = await login(provider, work, [
        "--issuer",
        provider.issuer,
        "--client-id",
        "no-such-client",
        ...(par ? [] : ["--no-par"]),
      ]);
      const ms = performance.now() - started;
      assertEquals(run.code, EXIT_USAGE, run.stderr);
      assert(ms < 10_000, `took ${ms} ms`);
      assertEquals(run.page, undefined, "no browser was opened");
      const said = unwrapped(run.stderr);
      assertMatch(
        said,
        par
          ? /error: The server rejected the sign-in request: it answered "invalid_client" \(.+\)\n/
          : /error: The server rejected the sign-in request \(HTTP 400\): "invalid_client" \(client is invalid\)\n/,
      );
      assertStringIncludes(said, 'hint: check that the client id "no-such-client" exists at the server');
    });
  });

  interop(
    `login ${how}: an unregistered redirect URI ends within seconds, exit 2, with the provider's words`,
    async () => {
      await withProvider([], async (provider, work) => {
        const redirect = `http://127.0.0.1:${freePort()}/not-registered`;
        const run = await login(provider, work, [
          ...client(provider),
          "--redirect-uri",
          redirect,
          ...(par ? [] : ["--no-par"]),
        ]);
        assertEquals(run.code, EXIT_USAGE, run.stderr);
        assertEquals(run.page, undefined, "no browser was opened");
        const said = unwrapped(run.stderr);
        // oidc-provider answers the pushed request with invalid_request, the page with invalid_redirect_uri.
        assertMatch(
          said,
          par
            ? /error: The server rejected the sign-in request: it answered "invalid_request" \(redirect_uri did not match any of the client's registered redirect_uris\)\n/
            : /error: The server rejected the sign-in request \(HTTP 400\): "invalid_redirect_uri" \(redirect_uri did not match any of the client's registered redirect_uris\)\n/,
        );
        assertStringIncludes(
          said,
          `has this redirect URI registered (a loopback one may need any port allowed): ${redirect}\n`,
        );
      });
    },
  );
}

interop(
  "login: a default login at a strict OpenID server that drops offline_access prints the README's three lines",
  async () => {
    await withProvider([], async (provider, work) => {
      const run = await login(provider, work, client(provider));
      assertEquals(run.code, 0, run.stderr);
      const after = run.stderr.slice(run.stderr.indexOf("Logged in as"));
      assertEquals(
        after,
        `Logged in as ${provider.account.preferred_username}\n` +
          "warning: The server did not grant offline_access, so it issued no refresh token\n" +
          "note: Log in with --prompt consent to get one (strict OpenID servers need it)\n",
      );
    });
  },
);
