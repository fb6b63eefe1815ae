/**
 * Logins without a person (issue 22) against the real OpenID provider of the interop suite
 * (oidc-provider 8 under Node), started with `--machine`: client credentials with a secret and with
 * private_key_jwt, token exchange (RFC 8693) and JWT bearer (RFC 7523) through oidc-provider's
 * `registerGrantType`, whose handlers check each subject token's signature against a CI's JWKS. The
 * tests play the CI: a stand-in GitHub Actions ID-token endpoint (it checks the job's bearer token
 * and signs a JWT for the audience asked), and a Kubernetes-style token file replaced between two
 * grants. login.ts runs as a subprocess, as a CI job or a pod runs it.
 *
 * Needs tests/interop/prepare.sh (npm ci); without it every test skips with a printed reason.
 */
import { interopSuite, type Running, startProvider, withRunning } from "./_interop.ts";
import { fileURLToPath } from "node:url";
import { assert, assertEquals, assertMatch, assertStringIncludes } from "./assert.ts";

const path = (relative: string) => fileURLToPath(new URL(relative, import.meta.url));
const LOGIN = path("../login.ts");
const CONFIG = path("../deno.json");
const PERMISSIONS = ["--allow-net", "--allow-env", "--allow-read", "--allow-write", "--allow-run"];
const TOOL_MS = 30_000;
const EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange";

const interop = interopSuite("interop_machine_test.ts");

// ── The provider, and the CI it trusts ──────────────────────────────────────────────────────────

type Provider = Running<ProviderInfo>;

interface ProviderInfo {
  issuer: string;
  jwtClients: { privateKeyJwt: { id: string; jwk: JsonWebKey & { kid: string } } };
  machineClients: { secret: { id: string; secret: string }; privateKeyJwt: { id: string } };
  ci: { issuer: string; jwk: JsonWebKey & { kid: string } };
}

function withProvider(args: string[], fn: (provider: Provider, work: string) => Promise<void>): Promise<void> {
  return withRunning(() => startProvider<ProviderInfo>(["--machine", ...args]), "oauth-login-interop-machine-", fn);
}

function b64url(data: string | Uint8Array): string {
  const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
  return btoa(String.fromCharCode(...bytes)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

/** A JWT the CI signs (ES256 with the provider's trusted CI key): `claims` over iss, aud, iat, exp and jti. */
async function ciToken(provider: Provider, claims: Record<string, unknown>): Promise<string> {
  const { kid, alg: _alg, ...jwk } = provider.ci.jwk;
  const key = await crypto.subtle.importKey("jwk", jwk, { name: "ECDSA", namedCurve: "P-256" }, false, ["sign"]);
  const now = Math.floor(Date.now() / 1000);
  const header = b64url(JSON.stringify({ alg: "ES256", typ: "JWT", kid }));
  const payload = b64url(JSON.stringify({
    iss: provider.ci.issuer,
    aud: provider.issuer,
    iat: now,
    exp: now + 600,
    jti: crypto.randomUUID(),
    ...claims,
  }));
  const signature = await crypto.subtle.sign(
    { name: "ECDSA", hash: "SHA-256" },
    key,
    new TextEncoder().encode(`${header}.${payload}`),
  );
  return `${header}.${payload}.${b64url(new Uint8Array(signature))}`;
}

/**
 * A stand-in for GitHub Actions' ID-token endpoint (`ACTIONS_ID_TOKEN_REQUEST_URL`): it answers only
 * `Authorization: bearer <the job's request token>`, and signs a JWT for the `audience` asked.
 */
function githubActions(provider: Provider, sub: string) {
  const requestToken = `ghs_${crypto.randomUUID().replaceAll("-", "")}`;
  const asked: { audience: string | null; authorization: string | null }[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (request) => {
    const url = new URL(request.url);
    asked.push({ audience: url.searchParams.get("audience"), authorization: request.headers.get("authorization") });
    if (request.headers.get("authorization") !== `bearer ${requestToken}`) {
      return Response.json({ message: "Bad credentials" }, { status: 401 });
    }
    const audience = url.searchParams.get("audience") ?? "https://github.com/octo";
    return Response.json({ count: 1, value: await ciToken(provider, { sub, aud: audience }) });
  });
  return {
    env: {
      ACTIONS_ID_TOKEN_REQUEST_URL: `http://127.0.0.1:${server.addr.port}/token?api-version=2.0`,
      ACTIONS_ID_TOKEN_REQUEST_TOKEN: requestToken,
    },
    requestToken,
    asked,
    close: () => server.shutdown(),
  };
}

// ── The tool ────────────────────────────────────────────────────────────────────────────────────

interface ToolRun {
  code: number;
  stdout: string;
  stderr: string;
}

async function tool(work: string, args: string[], env: Record<string, string> = {}): Promise<ToolRun> {
  const base: Record<string, string> = {};
  for (const [name, value] of Object.entries(Deno.env.toObject())) {
    // Not the task's own variables either: hints then name the tool as `deno run` does, however the suite is run.
    if (!/^(OAUTH_|INTEROP_|ACTIONS_|BROWSER$|INIT_CWD$|npm_config_user_agent$)/.test(name)) base[name] = value;
  }
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--config", CONFIG, ...PERMISSIONS, LOGIN, ...args],
    cwd: work,
    env: { ...base, NO_COLOR: "1", OAUTH_LOGIN_CACHE: `${work}/cache`, ...env },
    clearEnv: true,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const kill = setTimeout(() => child.kill("SIGKILL"), TOOL_MS);
  const output = await child.output();
  clearTimeout(kill);
  const decoder = new TextDecoder();
  // Prose on stderr is wrapped at 80 columns (continuation lines indented): the tests read it unwrapped.
  const stderr = decoder.decode(output.stderr).replace(/\n +/g, " ");
  return { code: output.code, stdout: decoder.decode(output.stdout), stderr };
}

/** What the provider's introspection endpoint says of a token (asked by the secret client, which may). */
async function introspect(provider: Provider, token: string): Promise<Record<string, unknown>> {
  const { id, secret } = provider.machineClients.secret;
  const response = await fetch(`${provider.issuer}/token/introspection`, {
    method: "POST",
    headers: { authorization: `Basic ${btoa(`${id}:${secret}`)}` },
    body: new URLSearchParams({ token }),
  });
  return await response.json();
}

/** The one cache entry, and its file. */
async function entry(work: string): Promise<Record<string, unknown> & { file: string }> {
  const files = [...Deno.readDirSync(`${work}/cache`)].filter((e) => e.name.endsWith(".json"));
  assertEquals(files.length, 1, "one cache entry");
  const file = `${work}/cache/${files[0].name}`;
  return { ...JSON.parse(await Deno.readTextFile(file)), file };
}

/** Makes the cached token due: it expired a second ago (what an hour of waiting would do). */
async function expire(work: string): Promise<void> {
  const { file, ...cached } = await entry(work);
  const now = Date.now();
  await Deno.writeTextFile(file, JSON.stringify({ ...cached, issuedAt: now - 3_600_000, expiresAt: now - 1_000 }), {
    mode: 0o600,
  });
}

/** How many grants of `grantType` the provider has made (it logs each). */
function grants(provider: Provider, grantType: string): number {
  return provider.log().split("\n").filter((line) => line === `provider: grant ${grantType}`).length;
}

// ── Client credentials ──────────────────────────────────────────────────────────────────────────

interop(
  "client credentials with a secret and with private_key_jwt: a valid token, cached, and the grant run again when due",
  async () => {
    await withProvider([], async (provider, work) => {
      await Deno.writeTextFile(`${work}/client.jwk`, JSON.stringify(provider.jwtClients.privateKeyJwt.jwk), {
        mode: 0o600,
      });
      const clients: [string, string[], Record<string, string>][] = [
        ["secret", ["--client-id", provider.machineClients.secret.id], {
          OAUTH_CLIENT_SECRET: provider.machineClients.secret.secret,
        }],
        ["private_key_jwt", [
          "--client-id",
          provider.machineClients.privateKeyJwt.id,
          "--client-key",
          `${work}/client.jwk`,
        ], {}],
      ];
      for (const [how, flags, env] of clients) {
        await Deno.remove(`${work}/cache`, { recursive: true }).catch(() => {});
        const args = ["token", "--issuer", provider.issuer, "--grant", "client_credentials", ...flags];
        const before = grants(provider, "client_credentials");
        const first = await tool(work, args, env);
        assertEquals([first.code, first.stderr], [0, ""], `${how}: ${first.stderr}`);
        const token = first.stdout.trim();
        const info = await introspect(provider, token);
        assertEquals([info.active, info.client_id], [true, flags[1]], `${how}: the provider knows the token`);
        const cached = await entry(work);
        assertEquals([cached.grant, cached.authMethod], [
          "client_credentials",
          how === "secret" ? "client_secret_basic" : how,
        ]);
        assertEquals(cached.refreshToken, undefined);

        const again = await tool(work, args, env);
        assertEquals([again.code, again.stdout], [0, first.stdout], `${how}: the cached token, no new grant`);
        assertEquals(grants(provider, "client_credentials"), before + 1);

        await expire(work);
        const renewed = await tool(work, args, env);
        assertEquals([renewed.code, renewed.stderr], [0, ""], renewed.stderr);
        assert(renewed.stdout !== first.stdout, `${how}: a new token`);
        assertEquals((await introspect(provider, renewed.stdout.trim())).active, true);
        assertEquals(grants(provider, "client_credentials"), before + 2, `${how}: the grant ran again`);
      }
    });
  },
);

interop("client credentials with DPoP: a DPoP-bound token, which exec refuses to hand to a program", async () => {
  await withProvider(["--dpop"], async (provider, work) => {
    const { id, secret } = provider.machineClients.secret;
    const args = ["--issuer", provider.issuer, "--client-id", id, "--grant", "client_credentials", "--dpop"];
    const run = await tool(work, ["token", ...args, "--format", "json"], { OAUTH_CLIENT_SECRET: secret });
    assertEquals(run.code, 0, run.stderr);
    assertEquals(JSON.parse(run.stdout).token_type, "DPoP");
    assertEquals(typeof (await entry(work)).dpopKey, "object");
    const exec = await tool(work, ["exec", ...args, "--", "true"], { OAUTH_CLIENT_SECRET: secret });
    assertEquals(exec.code, 2);
    assertEquals(
      exec.stderr,
      "error: The token is DPoP-bound, and a program cannot make DPoP proofs without its key\n" +
        `hint: use "deno run -A ${LOGIN} fetch" for each request, or "deno run -A ${LOGIN} token --format headers --url URL" for one; ` +
        "or log in without --dpop for a Bearer token\n",
    );
  });
});

// ── Token exchange and JWT bearer ───────────────────────────────────────────────────────────────

interop(
  "token exchange of a GitHub Actions ID token: the endpoint asked with the job's bearer and the issuer as audience, a token for the job, renewed by a new exchange",
  async () => {
    await withProvider([], async (provider, work) => {
      const sub = "repo:octo/app:ref:refs/heads/main";
      const github = githubActions(provider, sub);
      try {
        const { id, secret } = provider.machineClients.secret;
        const args = [
          "token",
          "--issuer",
          provider.issuer,
          "--client-id",
          id,
          "--grant",
          "token-exchange",
          "--subject-token-from",
          "github-actions",
        ];
        const env = { ...github.env, OAUTH_CLIENT_SECRET: secret };
        const first = await tool(work, args, env);
        assertEquals([first.code, first.stderr], [0, ""], first.stderr);
        assertEquals(github.asked, [{ audience: provider.issuer, authorization: `bearer ${github.requestToken}` }]);
        const info = await introspect(provider, first.stdout.trim());
        assertEquals([info.active, info.sub, info.client_id], [true, sub, id]);
        assertStringIncludes(provider.log(), `provider: token-exchange for ${sub}`);

        const whoami = await tool(work, ["whoami", ...args.slice(1)], env);
        assertEquals(whoami.code, 0, whoami.stderr);
        assertMatch(
          whoami.stdout,
          new RegExp(
            `^Token from ${provider.issuer} for ${sub.replaceAll("/", "\\/")} \\(token exchange\\)\n` +
              `  client:  ${id}\n  grant:   token-exchange, subject token from github-actions\n` +
              "  issued:  urn:ietf:params:oauth:token-type:access_token\n",
          ),
        );

        await expire(work);
        const renewed = await tool(work, args, env);
        assertEquals([renewed.code, renewed.stderr], [0, ""], renewed.stderr);
        assert(renewed.stdout !== first.stdout, "a new token");
        assertEquals(github.asked.length, 2, "a fresh ID token for the second exchange");
        assertEquals((await introspect(provider, renewed.stdout.trim())).sub, sub);
        assertEquals(grants(provider, EXCHANGE), 2);
      } finally {
        await github.close();
      }
    });
  },
);

interop(
  "token exchange that brings a refresh token: renewal refreshes at the provider and asks GitHub Actions nothing",
  async () => {
    await withProvider([], async (provider, work) => {
      const github = githubActions(provider, "repo:octo/app:ref:refs/heads/main");
      try {
        const { id, secret } = provider.machineClients.secret;
        const args = [
          "token",
          "--issuer",
          provider.issuer,
          "--client-id",
          id,
          "--grant",
          "token-exchange",
          "--subject-token-from",
          "github-actions",
          "--scope",
          "openid offline_access",
        ];
        const env = { ...github.env, OAUTH_CLIENT_SECRET: secret };
        const first = await tool(work, args, env);
        assertEquals(first.code, 0, first.stderr);
        const cached = await entry(work);
        assertEquals(typeof cached.refreshToken, "string");
        await expire(work);
        const renewed = await tool(work, args, env);
        assertEquals([renewed.code, renewed.stderr], [0, ""], renewed.stderr);
        assert(renewed.stdout !== first.stdout, "a new token");
        assertEquals(github.asked.length, 1, "no new ID token: the refresh token did it");
        assertEquals([grants(provider, "refresh_token"), grants(provider, EXCHANGE)], [1, 1]);
        const after = await entry(work);
        assert(after.refreshToken !== cached.refreshToken, "the rotated refresh token was kept");
        assertEquals(after.grant, "token-exchange");
        assertEquals((await introspect(provider, renewed.stdout.trim())).active, true);
      } finally {
        await github.close();
      }
    });
  },
);

interop(
  "JWT bearer from a Kubernetes-style token file: the file replaced between two grants, the second grant sends the new token",
  async () => {
    await withProvider([], async (provider, work) => {
      const tokenFile = `${work}/serviceaccount/token`;
      await Deno.mkdir(`${work}/serviceaccount`);
      const project = async (sub: string) => {
        // As the kubelet does: the new token written beside the old one, then swapped in.
        await Deno.writeTextFile(`${tokenFile}.new`, await ciToken(provider, { sub }));
        await Deno.rename(`${tokenFile}.new`, tokenFile);
      };
      await project("system:serviceaccount:ci:builder-1");
      const { id, secret } = provider.machineClients.secret;
      const args = [
        "token",
        "--issuer",
        provider.issuer,
        "--client-id",
        id,
        "--grant",
        "jwt-bearer",
        "--subject-token-from",
        `kubernetes:${tokenFile}`,
      ];
      const env = { OAUTH_CLIENT_SECRET: secret };
      const first = await tool(work, args, env);
      assertEquals([first.code, first.stderr], [0, ""], first.stderr);
      assertEquals((await introspect(provider, first.stdout.trim())).sub, "system:serviceaccount:ci:builder-1");

      await project("system:serviceaccount:ci:builder-2");
      const cachedStill = await tool(work, args, env);
      assertEquals(cachedStill.stdout, first.stdout, "a token not yet due is the cached one");
      await expire(work);
      const second = await tool(work, args, env);
      assertEquals([second.code, second.stderr], [0, ""], second.stderr);
      const info = await introspect(provider, second.stdout.trim());
      assertEquals([info.active, info.sub], [true, "system:serviceaccount:ci:builder-2"], "the new file was read");
      assertEquals(grants(provider, "urn:ietf:params:oauth:grant-type:jwt-bearer"), 2);
    });
  },
);

interop(
  "a subject token the provider does not trust: refused with the provider's words and what to check",
  async () => {
    await withProvider([], async (provider, work) => {
      const { id, secret } = provider.machineClients.secret;
      // The right shape and issuer, but for another audience: the provider's handler refuses it (and
      // oidc-provider says no more than "grant request is invalid", as it does for every invalid_grant).
      const forged = await ciToken(provider, { sub: "someone", aud: "https://elsewhere.example" });
      const run = await tool(work, [
        "token",
        "--issuer",
        provider.issuer,
        "--client-id",
        id,
        "--grant",
        "token-exchange",
        "--subject-token-from",
        "env:CI_TOKEN",
      ], { OAUTH_CLIENT_SECRET: secret, CI_TOKEN: forged });
      assertEquals(run.code, 1);
      assertMatch(
        run.stderr,
        /^error: Cannot exchange the subject token: the server answered "invalid_grant" \(grant request is invalid\)\nhint: the server refused the subject token from env:CI_TOKEN: check that it trusts its issuer and that its audience is what the server expects\n$/,
      );
      assert(!run.stderr.includes(forged.slice(0, 20)), "the subject token is never printed");
      const cached = [...Deno.readDirSync(`${work}/cache`)].filter((e) => e.name.endsWith(".json"));
      assertEquals(cached, [], "nothing cached");
    });
  },
);

interop(
  "exec hands a client credentials token the provider accepts to a program, and returns its exit code",
  async () => {
    await withProvider([], async (provider, work) => {
      const { id, secret } = provider.machineClients.secret;
      const run = await tool(work, [
        "exec",
        "--issuer",
        provider.issuer,
        "--client-id",
        id,
        "--grant",
        "client_credentials",
        "--",
        "sh",
        "-c",
        'printf %s "$OAUTH_ACCESS_TOKEN" > token.txt; exit 7',
      ], { OAUTH_CLIENT_SECRET: secret });
      assertEquals([run.code, run.stderr], [7, ""]);
      const token = await Deno.readTextFile(`${work}/token.txt`);
      assertEquals((await introspect(provider, token)).active, true);
    });
  },
);
