/**
 * Where the tool runs (issue 12): kubectl's credential-plugin contract, proxies and loopback, one
 * cache identity per issuer, `.env` under `deno task`, Deno permissions, loopback redirects without
 * a port, and `DENO_CERT` in `doctor`. Each case starts from the input that failed; the cases that
 * are about processes (kubectl, `deno task`, `deno run` with no permissions, a proxy in the
 * environment) run real subprocesses.
 *
 * @module
 */
import { assert, assertEquals, assertMatch, assertNotMatch, assertStringIncludes } from "./assert.ts";
import { EXIT, testing } from "../login.ts";
const {
  cacheKey,
  envFilePath,
  legacyCacheKeys,
  misspeltKeys,
  parseDotenv,
  parseExecInfo,
  parseIssuer,
  planRedirect,
  routeFor,
} = testing;
import { PUBLIC_CLIENT } from "./mock_issuer.ts";
import { cleanUp, run, type RunOptions, scriptedBrowser, withMock } from "./_harness.ts";

const ROOT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
/** A self-signed certificate for 127.0.0.1 and localhost, and its key: for test servers only. */
const LOOPBACK_TLS = {
  cert: Deno.readTextFileSync(`${ROOT}/tests/fixtures/loopback-cert.pem`),
  key: Deno.readTextFileSync(`${ROOT}/tests/fixtures/loopback-key.pem`),
};
const LOGIN_TS = `${ROOT}/login.ts`;

// ── Helpers ─────────────────────────────────────────────────────────────────────────────────────

/** A browser login against the mock, in process; returns the run (its home holds the cache). */
async function login(args: string[], options: RunOptions = {}) {
  const result = await run(["login", "--client-id", PUBLIC_CLIENT.id, "--flow", "browser", ...args], {
    browser: (start) => scriptedBrowser(start),
    ...options,
  });
  assertEquals(result.code, EXIT.ok, result.stderr);
  return result;
}

interface Process {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a real process with a clean environment (plus `env`) and a time bound. */
async function spawn(
  command: string,
  args: string[],
  options: { env?: Record<string, string>; cwd?: string; stdin?: string; boundMs?: number } = {},
): Promise<Process> {
  const child = new Deno.Command(command, {
    args,
    cwd: options.cwd ?? ROOT,
    clearEnv: true,
    env: {
      PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin",
      HOME: Deno.env.get("HOME") ?? "/tmp",
      DENO_NO_UPDATE_CHECK: "1", // Deno's own update check would otherwise reach a proxy stand-in
      ...options.env,
    },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const timer = setTimeout(() => child.kill("SIGKILL"), options.boundMs ?? 30_000);
  try {
    const output = await child.output();
    const decode = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
    return { code: output.code, stdout: decode(output.stdout), stderr: decode(output.stderr) };
  } finally {
    clearTimeout(timer);
  }
}

/** `deno run -A login.ts ARGS` with a clean environment. */
function tool(args: string[], env: Record<string, string> = {}, flags = ["-A"]): Promise<Process> {
  return spawn(Deno.execPath(), ["run", "-q", ...flags, LOGIN_TS, ...args], { env }).then(unwrapped);
}

/**
 * The process's stderr with the tool's wrapping undone (a piped stderr is wrapped at 80 columns, each
 * continuation line indented): these tests compare sentences, and the waits tests check the wrapping.
 */
function unwrapped(process: Process): Process {
  return { ...process, stderr: process.stderr.replace(/\n {2,}/g, " ") };
}

/** A stand-in for a forward proxy on loopback: it records what reached it and answers 502. */
function proxyStandIn() {
  const seen: string[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (request) => {
    seen.push(`${request.method} ${request.url}`);
    return new Response("the proxy cannot reach that host", { status: 502 });
  });
  return { url: `http://127.0.0.1:${server.addr.port}`, seen, close: () => server.shutdown() };
}

// ── 6: a loopback redirect URI without a port, or with port 0 ───────────────────────────────────

Deno.test("login with a loopback redirect URI without a port or with port 0 binds a free port and sends it", async (t) => {
  // (The mock, like RFC 8252 §7.3, lets only IP literals vary the port; `localhost` is covered below.)
  const cases: [string, "flag" | "variable"][] = [
    ["http://127.0.0.1/callback", "variable"], // the README's Okta Native setting, as OAUTH_REDIRECT_URI
    ["http://127.0.0.1/callback", "flag"],
    ["http://127.0.0.1:0/callback", "flag"],
  ];
  for (const [configured, how] of cases) {
    await t.step(`${configured} (${how})`, async () => {
      await withMock(async (mock) => {
        mock.clients.push({ id: "loopback-any-port", auth: "none", redirectUris: [configured.replace(":0", "")] });
        const result = await run(
          ["login", "--issuer", mock.issuer, "--client-id", "loopback-any-port", "--flow", "browser"].concat(
            how === "flag" ? ["--redirect-uri", configured] : [],
          ),
          {
            browser: (start) => scriptedBrowser(start),
            env: how === "variable" ? { OAUTH_REDIRECT_URI: configured } : {},
          },
        );
        assertEquals(result.code, EXIT.ok, result.stderr);
        const sent = new URL(mock.calls("authorize")[0].query.redirect_uri);
        const host = new URL(configured).hostname;
        assertEquals(sent.hostname, host);
        assertEquals(sent.pathname, "/callback");
        assert(Number(sent.port) > 1024, `a free port was sent, not "${sent.port}"`);
        assertEquals(new URL(result.opened[0]).port, sent.port, "the browser went to the port that was sent");
        assertEquals(mock.calls("token")[0].form.redirect_uri, sent.href);
        await cleanUp(result);
      });
    });
  }
});

Deno.test("planRedirect() keeps an explicit port, :80 included, and --port 80 stays port 80", async () => {
  assertEquals(planRedirect("http://127.0.0.1:80/callback").port, 80);
  assertEquals(planRedirect("http://127.0.0.1:80/callback").fixed, "http://127.0.0.1:80/callback");
  assertEquals(planRedirect("http://127.0.0.1:8080/cb").port, 8080);
  assertEquals(planRedirect("http://127.0.0.1/callback").port, 0);
  assertEquals(planRedirect("http://127.0.0.1/callback").fixed, undefined);
  assertEquals(planRedirect("http://[::1]:0/cb").addresses, ["::1"]);
  assertEquals(planRedirect("http://[::1]:0/cb").port, 0);
  assertEquals(planRedirect("http://localhost/cb"), {
    addresses: ["127.0.0.1", "::1"],
    host: "localhost",
    port: 0,
    path: "/cb",
  });
  const result = await run(["doctor", "--issuer", "http://127.0.0.1:9/", "--client-id", "c", "--port", "80"], {
    fetch: () => Promise.reject(new TypeError("offline")),
  });
  assertStringIncludes(result.stdout, "redirect URI: http://127.0.0.1:80/callback");
  await cleanUp(result);
});

Deno.test("doctor says that a redirect URI without a port means any free port", async () => {
  const result = await run(
    ["doctor", "--issuer", "http://127.0.0.1:9", "--client-id", "c", "--redirect-uri", "http://127.0.0.1/callback"],
    { fetch: () => Promise.reject(new TypeError("offline")) },
  );
  assertStringIncludes(
    result.stdout,
    `"http://127.0.0.1/callback" names no port (or port 0): any free port on 127.0.0.1 is used and sent as http://127.0.0.1:<free port>/callback (RFC 8252 §7.3)`,
  );
  assertNotMatch(result.stdout, /port 80 /);
  await cleanUp(result);
});

// ── 3: one identity per issuer ──────────────────────────────────────────────────────────────────

Deno.test("parseIssuer() gives one identifier for every way of writing an origin issuer", () => {
  const forms = [
    "https://idp.example",
    "https://idp.example/",
    "https://IDP.example:443/",
    "https://idp.example/.well-known/openid-configuration",
    "https://idp.example/.well-known/oauth-authorization-server",
  ];
  for (const form of forms) assertEquals(parseIssuer(form).issuer, "https://idp.example", form);
  // A path keeps its own identity, with or without its trailing slash (those are different issuers).
  assertEquals(
    parseIssuer("https://idp.example/tenant/.well-known/openid-configuration").issuer,
    "https://idp.example/tenant",
  );
  assertEquals(parseIssuer("https://idp.example/tenant/").issuer, "https://idp.example/tenant/");
  const config = { clientId: "c", scope: undefined, params: [] };
  assertEquals(legacyCacheKeys({ ...config, issuer: "https://idp.example" }), [
    cacheKey({ ...config, issuer: "https://idp.example/" }),
  ]);
  assertEquals(legacyCacheKeys({ ...config, issuer: "https://idp.example/tenant" }), []);
});

Deno.test("token, whoami and logout find the entry whichever way the issuer is written", async (t) => {
  const cases = [
    { login: (i: string) => `${i}/.well-known/openid-configuration`, other: (i: string) => i },
    { login: (i: string) => `${i}/.well-known/openid-configuration`, other: (i: string) => `${i}/` },
    { login: (i: string) => `${i}/`, other: (i: string) => `${i}/.well-known/oauth-authorization-server` },
  ];
  for (const forms of cases) {
    await t.step(`login ${forms.login("ISSUER")}, then ${forms.other("ISSUER")}`, async () => {
      await withMock(async (mock) => {
        const first = await login(["--issuer", forms.login(mock.issuer)]);
        const other = ["--issuer", forms.other(mock.issuer), "--client-id", PUBLIC_CLIENT.id];
        const token = await run(["token", ...other], { home: first.home });
        assertEquals(token.code, EXIT.ok, token.stderr);
        assert(mock.accessTokens.has(token.stdout.trim()), "token printed the access token the login got");
        assertEquals(token.stderr, "");

        const whoami = await run(["whoami", ...other], { home: first.home });
        assertEquals(whoami.code, EXIT.ok, whoami.stderr);
        assertStringIncludes(whoami.stdout, `Logged in to ${mock.issuer} as alice@example.com`);

        const logout = await run(["logout", ...other], { home: first.home });
        assertEquals(logout.code, EXIT.ok, logout.stderr);
        assertEquals(logout.stderr, `Logged out of ${mock.issuer}\n`);
        assertEquals(mock.calls("revoke").length, 2, "the refresh and access tokens were revoked");
        const left = [...Deno.readDirSync(`${first.home}/cache`)].filter((e) => e.name.endsWith(".json"));
        assertEquals(left, [], "the entry is gone from disk");
        await cleanUp(first);
      });
    });
  }
});

Deno.test("an entry saved under the older key (issuer with its slash) is still found by token, whoami and logout", async () => {
  await withMock(async (mock) => {
    const first = await login(["--issuer", mock.issuer]);
    const config = { issuer: mock.issuer, clientId: PUBLIC_CLIENT.id, scope: undefined, params: [] };
    const [legacy] = legacyCacheKeys(config);
    const dir = `${first.home}/cache`;
    // What an earlier version wrote: the same entry, under the name its slashed issuer hashed to.
    const entry = JSON.parse(Deno.readTextFileSync(`${dir}/${cacheKey(config)}.json`));
    entry.issuer = `${mock.issuer}/`;
    Deno.writeTextFileSync(`${dir}/${legacy}.json`, JSON.stringify(entry), { mode: 0o600 });
    Deno.removeSync(`${dir}/${cacheKey(config)}.json`);

    const args = ["--issuer", mock.issuer, "--client-id", PUBLIC_CLIENT.id];
    const token = await run(["token", ...args], { home: first.home });
    assertEquals(token.code, EXIT.ok, token.stderr);
    assertEquals(token.stdout, `${entry.accessToken}\n`);
    const whoami = await run(["whoami", "--issuer", `${mock.issuer}/`, "--client-id", PUBLIC_CLIENT.id], {
      home: first.home,
    });
    assertEquals(whoami.code, EXIT.ok, whoami.stderr);
    const logout = await run(["logout", ...args], { home: first.home });
    assertEquals(logout.stderr, `Logged out of ${mock.issuer}\n`);
    assertEquals(mock.calls("revoke").length, 2);
    assertEquals([...Deno.readDirSync(dir)].filter((e) => e.name.endsWith(".json")), []);
    await cleanUp(first);
  });
});

// ── 1: kubectl's credential-plugin contract ─────────────────────────────────────────────────────

const EXEC_INFO = (apiVersion: string, interactive: boolean) =>
  JSON.stringify({ apiVersion, kind: "ExecCredential", spec: { interactive } });

Deno.test("parseExecInfo() reads KUBERNETES_EXEC_INFO and refuses what is not an ExecCredential", () => {
  assertEquals(parseExecInfo(undefined), undefined);
  assertEquals(parseExecInfo(EXEC_INFO("client.authentication.k8s.io/v1beta1", false)), {
    apiVersion: "client.authentication.k8s.io/v1beta1",
    interactive: false,
  });
  assertEquals(parseExecInfo(EXEC_INFO("client.authentication.k8s.io/v1", true))?.interactive, true);
  for (const bad of ["{", "[]", '{"apiVersion":"v1","kind":"Pod"}']) {
    try {
      parseExecInfo(bad);
      throw new Error(`accepted ${bad}`);
    } catch (error) {
      assertEquals((error as Error).message, "KUBERNETES_EXEC_INFO is not a kubectl ExecCredential");
    }
  }
});

Deno.test("token --format exec-credential as a process answers in the version KUBERNETES_EXEC_INFO names", async (t) => {
  await withMock(async (mock) => {
    const first = await login(["--issuer", mock.issuer]);
    const env = {
      OAUTH_ISSUER: mock.issuer,
      OAUTH_CLIENT_ID: PUBLIC_CLIENT.id,
      OAUTH_LOGIN_CACHE: `${first.home}/cache`,
    };
    const args = ["token", "--format", "exec-credential"];
    const token = [...mock.accessTokens.keys()][0];
    for (const version of ["client.authentication.k8s.io/v1beta1", "client.authentication.k8s.io/v1"]) {
      await t.step(version, async () => {
        const result = await tool(args, { ...env, KUBERNETES_EXEC_INFO: EXEC_INFO(version, false) });
        assertEquals(result.code, 0, result.stderr);
        const credential = JSON.parse(result.stdout);
        assertEquals(credential.apiVersion, version);
        assertEquals(credential.kind, "ExecCredential");
        assertEquals(credential.status.token, token);
        assertMatch(credential.status.expirationTimestamp, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
        assertEquals(result.stderr, "");
      });
    }
    await t.step("without the variable: v1, as before", async () => {
      const result = await tool(args, env);
      assertEquals(JSON.parse(result.stdout).apiVersion, "client.authentication.k8s.io/v1");
    });
    await t.step("a version it does not speak: exit 2 and one sentence", async () => {
      const result = await tool(args, {
        ...env,
        KUBERNETES_EXEC_INFO: EXEC_INFO("client.authentication.k8s.io/v1alpha1", false),
      });
      assertEquals(result.code, EXIT.usage);
      assertEquals(result.stdout, "");
      assertEquals(
        result.stderr,
        'error: kubectl asks for the ExecCredential version "client.authentication.k8s.io/v1alpha1", which this tool does not speak\n' +
          "hint: set apiVersion in the kubeconfig's exec block to one of client.authentication.k8s.io/v1, client.authentication.k8s.io/v1beta1\n",
      );
    });
    await cleanUp(first);
  });
});

Deno.test("token under kubectl with spec.interactive false never signs in, whatever --interactive and the terminal say", async () => {
  await withMock(async (mock) => {
    const result = await run(
      ["token", "--client-id", PUBLIC_CLIENT.id, "--format", "exec-credential", "--interactive"],
      {
        interactive: true,
        // As a kubeconfig's exec block sets it: the person's own shell does not have it.
        env: {
          KUBERNETES_EXEC_INFO: EXEC_INFO("client.authentication.k8s.io/v1beta1", false),
          OAUTH_ISSUER: mock.issuer,
        },
      },
    );
    assertEquals(result.code, EXIT.loginRequired);
    assertEquals(result.stdout, "");
    // The login to run in a terminal carries every setting, the exec block's environment included.
    assertEquals(
      result.stderr,
      `error: No cached token for ${mock.issuer}\n` +
        `hint: kubectl gives this plugin no terminal: run "oauth-login login --issuer ${mock.issuer} --client-id ${PUBLIC_CLIENT.id}" in a terminal, then run kubectl again\n`,
    );
    assertEquals(result.opened, [], "no browser was opened");
    assertEquals(mock.requests.length, 0, "nothing was asked of the issuer");
    await cleanUp(result);
  });
});

Deno.test("token under kubectl with spec.interactive true may sign in without --interactive", async () => {
  await withMock(async (mock) => {
    const result = await run(
      ["token", "--issuer", mock.issuer, "--client-id", PUBLIC_CLIENT.id, "--format", "exec-credential"],
      {
        browser: (start) => scriptedBrowser(start),
        env: { KUBERNETES_EXEC_INFO: EXEC_INFO("client.authentication.k8s.io/v1", true) },
      },
    );
    assertEquals(result.code, EXIT.ok, result.stderr);
    assertEquals(JSON.parse(result.stdout).apiVersion, "client.authentication.k8s.io/v1");
    await cleanUp(result);
  });
});

/** A stand-in for the Kubernetes API server on loopback: 200 for the expected bearer token, else 401. */
function apiServerStandIn(token: string) {
  const seen: (string | null)[] = [];
  // TLS: kubectl runs exec plugins only for a server it talks to over https.
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {}, ...LOOPBACK_TLS }, (request) => {
    const authorization = request.headers.get("authorization");
    seen.push(authorization);
    if (authorization !== `Bearer ${token}`) {
      return Response.json({ kind: "Status", apiVersion: "v1", status: "Failure", code: 401, reason: "Unauthorized" }, {
        status: 401,
      });
    }
    return Response.json({ kind: "Status", apiVersion: "v1", status: "Success", message: "token accepted" });
  });
  return { url: `https://127.0.0.1:${server.addr.port}`, seen, close: () => server.shutdown() };
}

function kubeconfig(
  server: string,
  exec: { apiVersion: string; interactiveMode?: string },
  env: Record<string, string>,
) {
  return JSON.stringify({
    apiVersion: "v1",
    kind: "Config",
    clusters: [{ name: "local", cluster: { server, "certificate-authority-data": btoa(LOOPBACK_TLS.cert) } }],
    users: [{
      name: "oidc",
      user: {
        exec: {
          apiVersion: exec.apiVersion,
          command: Deno.execPath(),
          args: ["run", "-q", "-A", LOGIN_TS, "token", "--format", "exec-credential"],
          env: Object.entries(env).map(([name, value]) => ({ name, value })),
          ...(exec.interactiveMode ? { interactiveMode: exec.interactiveMode } : {}),
          provideClusterInfo: false,
        },
      },
    }],
    contexts: [{ name: "local", context: { cluster: "local", user: "oidc" } }],
    "current-context": "local",
  });
}

const kubectl = (() => {
  try {
    return Deno.statSync("/usr/bin/kubectl").isFile ? "/usr/bin/kubectl" : undefined;
  } catch {
    return undefined;
  }
})();
if (!kubectl) console.log("skipping the kubectl tests: /usr/bin/kubectl is not installed");

Deno.test({
  name: "real kubectl runs token as its credential plugin, v1beta1 and v1, and the API server gets the token",
  ignore: !kubectl,
  fn: async (t) => {
    await withMock(async (mock) => {
      const first = await login(["--issuer", mock.issuer]);
      const token = [...mock.accessTokens.keys()][0];
      const api = apiServerStandIn(token);
      const env = { OAUTH_ISSUER: mock.issuer, OAUTH_CLIENT_ID: PUBLIC_CLIENT.id };
      const kubectlRun = async (config: string, cache: string) => {
        const path = `${first.home}/kubeconfig`;
        Deno.writeTextFileSync(path, config);
        return await spawn(kubectl!, ["--kubeconfig", path, "get", "--raw", "/api/check"], {
          env: { HOME: first.home, OAUTH_LOGIN_CACHE: cache },
        });
      };
      try {
        for (
          const exec of [
            { apiVersion: "client.authentication.k8s.io/v1beta1" },
            { apiVersion: "client.authentication.k8s.io/v1", interactiveMode: "Never" },
            { apiVersion: "client.authentication.k8s.io/v1", interactiveMode: "IfAvailable" },
          ]
        ) {
          await t.step(`${exec.apiVersion} ${exec.interactiveMode ?? ""}`, async () => {
            const result = await kubectlRun(kubeconfig(api.url, exec, env), `${first.home}/cache`);
            assertEquals(result.code, 0, result.stderr);
            assertStringIncludes(result.stdout, "token accepted");
            assertEquals(api.seen.at(-1), `Bearer ${token}`);
          });
        }
        await t.step("logged out, interactiveMode Never: kubectl fails with the tool's sentence", async () => {
          const before = api.seen.length;
          const result = await kubectlRun(
            kubeconfig(api.url, { apiVersion: "client.authentication.k8s.io/v1", interactiveMode: "Never" }, env),
            `${first.home}/empty-cache`,
          );
          assert(result.code !== 0, "kubectl failed");
          assertStringIncludes(result.stderr, `error: No cached token for ${mock.issuer}`);
          assertStringIncludes(result.stderr, "kubectl gives this plugin no terminal");
          assertEquals(api.seen.slice(before).filter((a) => a !== null), [], "no token reached the API server");
          assertEquals(mock.calls("authorize").length, 1, "only the first login reached the issuer");
        });
      } finally {
        await api.close();
        await cleanUp(first);
      }
    });
  },
});

// ── 2: proxies and loopback ─────────────────────────────────────────────────────────────────────

Deno.test("routeFor() keeps loopback direct and honours NO_PROXY in its usual forms", async (t) => {
  const proxy = "http://proxy.corp:3128";
  const route = (url: string, env: Record<string, string>) => routeFor(new URL(url), (name) => env[name]);
  await t.step("loopback is never proxied, whatever NO_PROXY says", () => {
    for (
      const url of [
        "http://127.0.0.1:8080/",
        "http://127.9.8.7/",
        "http://[::1]:9/",
        "http://localhost:1/",
        "https://app.localhost/",
      ]
    ) {
      const env = { HTTP_PROXY: proxy, HTTPS_PROXY: proxy, NO_PROXY: "example.com" };
      assertEquals(route(url, env), { reason: "loopback, never proxied" }, url);
    }
  });
  await t.step("the proxy by scheme, upper case before lower, then ALL_PROXY; no scheme means http", () => {
    assertEquals(route("https://idp.example/", { HTTPS_PROXY: proxy, HTTP_PROXY: "http://other:1" }), {
      proxy,
      reason: "HTTPS_PROXY",
    });
    assertEquals(route("https://idp.example/", { https_proxy: "proxy.corp:3128" }), { proxy, reason: "https_proxy" });
    assertEquals(route("https://idp.example/", { HTTP_PROXY: proxy }), { reason: "no proxy is set" });
    assertEquals(route("https://idp.example/", { ALL_PROXY: "socks5://s:1080" }), {
      proxy: "socks5://s:1080",
      reason: "ALL_PROXY",
    });
  });
  await t.step("NO_PROXY forms", () => {
    const cases: [string, string, boolean][] = [
      ["*", "https://idp.example/", true],
      ["example.com", "https://example.com/", true],
      ["example.com", "https://login.example.com/", true],
      ["example.com", "https://notexample.com/", false],
      [".example.com", "https://login.example.com/", true],
      [".example.com", "https://example.com/", false],
      ["*.example.com", "https://a.b.example.com/", true],
      ["EXAMPLE.com", "https://Login.Example.COM/", true],
      ["example.com:443", "https://example.com/", true],
      ["example.com:8443", "https://example.com/", false],
      ["example.com:8443", "https://example.com:8443/", true],
      ["10.0.0.0/8", "https://10.20.30.40/", true],
      ["10.0.0.0/8", "https://11.0.0.1/", false],
      ["192.168.1.10", "https://192.168.1.10/", true],
      ["other.org, example.com", "https://example.com/", true],
      ["other.org example.com", "https://example.com/", true],
    ];
    for (const [noProxy, url, direct] of cases) {
      for (const name of ["NO_PROXY", "no_proxy"]) {
        const result = route(url, { HTTPS_PROXY: proxy, [name]: noProxy });
        assertEquals(result.proxy === undefined, direct, `${name}=${noProxy} for ${url}: ${JSON.stringify(result)}`);
        if (direct) assertMatch(result.reason, new RegExp(`^${name} has "`));
      }
    }
  });
});

Deno.test("a loopback issuer is reached directly when HTTP(S)_PROXY is set (real process, proxy stand-in)", async (t) => {
  const proxy = proxyStandIn();
  try {
    await withMock(async (mock) => {
      for (const noProxy of [undefined, "example.com"]) {
        await t.step(`NO_PROXY ${noProxy ?? "unset"}`, async () => {
          const env: Record<string, string> = {
            HTTP_PROXY: proxy.url,
            HTTPS_PROXY: proxy.url,
            http_proxy: proxy.url,
            OAUTH_LOGIN_CACHE: "/nonexistent/oauth-login-cache",
            ...(noProxy ? { NO_PROXY: noProxy } : {}),
          };
          const result = await tool(["doctor", "--issuer", mock.issuer, "--client-id", PUBLIC_CLIENT.id], env);
          assertStringIncludes(result.stdout, `ok    discovery  ${mock.issuer} answered`);
          assertStringIncludes(result.stdout, `ok    network    ${mock.issuer}: direct (loopback, never proxied)`);
          assertEquals(proxy.seen, [], "nothing reached the proxy");
          assert(mock.calls(".well-known/oauth-authorization-server").length > 0, "the issuer was asked directly");
        });
      }
    });
  } finally {
    await proxy.close();
  }
});

Deno.test("an https issuer goes through HTTPS_PROXY, and the proxy's refusal says it came from the proxy", async () => {
  const proxy = proxyStandIn();
  try {
    const result = await run(["login", "--issuer", "https://idp.example", "--client-id", "c"], {
      env: { HTTPS_PROXY: proxy.url },
    });
    assertEquals(result.code, EXIT.failure);
    assertEquals(proxy.seen, ["CONNECT http://idp.example:443"]);
    assertEquals(
      result.stderr,
      `error: Cannot reach idp.example through the proxy ${proxy.url} (HTTPS_PROXY): the proxy answered with an error (unsuccessful tunnel) (GET https://idp.example/.well-known/oauth-authorization-server)\n` +
        "hint: the proxy could not reach idp.example: check HTTPS_PROXY, or add the host to NO_PROXY\n",
    );
    await cleanUp(result);
  } finally {
    await proxy.close();
  }
});

Deno.test("a host NO_PROXY names is not sent to the proxy", async (t) => {
  const proxy = proxyStandIn();
  try {
    for (const [name, value] of [["NO_PROXY", ".invalid"], ["no_proxy", "idp.invalid:443"], ["NO_PROXY", "*"]]) {
      await t.step(`${name}=${value}`, async () => {
        const result = await run(["login", "--issuer", "https://idp.invalid", "--client-id", "c"], {
          env: { HTTPS_PROXY: proxy.url, [name]: value },
        });
        assertEquals(result.code, EXIT.failure);
        assertEquals(proxy.seen, []);
        assertMatch(result.stderr, /^error: Cannot reach idp\.invalid: /);
        assertNotMatch(result.stderr, /through the proxy/);
        await cleanUp(result);
      });
    }
  } finally {
    await proxy.close();
  }
});

Deno.test("doctor says which of the issuer's hosts go through which proxy, without its credentials", async () => {
  const metadata = {
    issuer: "https://idp.example",
    authorization_endpoint: "https://idp.example/authorize",
    token_endpoint: "https://tokens.example.net/token",
    jwks_uri: "https://idp.example/jwks",
    code_challenge_methods_supported: ["S256"],
  };
  const result = await run(["doctor", "--issuer", "https://idp.example", "--client-id", "c"], {
    env: { HTTPS_PROXY: "http://alice:pr0xy-pa55@proxy.corp:3128", no_proxy: ".example.net" },
    fetch: (input) => {
      const url = new URL(input instanceof Request ? input.url : String(input));
      return Promise.resolve(
        url.pathname === "/.well-known/oauth-authorization-server"
          ? Response.json(metadata)
          : new Response("not found", { status: 404 }),
      );
    },
  });
  assertStringIncludes(
    result.stdout,
    "ok    network    https://idp.example: through the proxy http://proxy.corp:3128 (HTTPS_PROXY)\n" +
      'ok    network    https://tokens.example.net: direct (no_proxy has ".example.net")\n',
  );
  assertNotMatch(result.stdout + result.stderr, /pr0xy-pa55|alice/);
  await cleanUp(result);
});

// ── 4: .env under deno task, as editors save it ─────────────────────────────────────────────────

Deno.test("parseDotenv() reads .env files however editors save them", async () => {
  const { parseEnv } = await import("node:util");
  const expected = { OAUTH_ISSUER: "https://idp.example", OAUTH_CLIENT_ID: "0oa1 2", OAUTH_SCOPE: "openid email" };
  const files = {
    "Windows Notepad (BOM, CRLF)":
      "\uFEFFOAUTH_ISSUER=https://idp.example\r\nOAUTH_CLIENT_ID=\"0oa1 2\"\r\nOAUTH_SCOPE='openid email'\r\n",
    "classic Mac OS (CR)": "OAUTH_ISSUER=https://idp.example\rOAUTH_CLIENT_ID=\"0oa1 2\"\rOAUTH_SCOPE='openid email'\r",
    "shell style (export, comments, spaces)":
      '# settings\nexport OAUTH_ISSUER=https://idp.example  # the issuer\nexport OAUTH_CLIENT_ID = "0oa1 2"\n\nOAUTH_SCOPE="openid email"\n',
  };
  for (const [editor, text] of Object.entries(files)) assertEquals(parseDotenv(text, parseEnv), expected, editor);
});

Deno.test("misspeltKeys() names the variable a look-alike key meant", () => {
  assertEquals(
    misspeltKeys({
      OAUTH_CLIENTID: "x",
      oauth_issuer: "x",
      "OAUTH-SCOPE": "x",
      OAUTH_ISUER: "x",
      OAUTH_ISSUER: "x",
      DATABASE_URL: "x",
      OAUTH_TOKEN_FOR_CI: "x",
    }),
    [
      'The .env key "OAUTH_CLIENTID" is not one this tool reads; did you mean OAUTH_CLIENT_ID?',
      'The .env key "oauth_issuer" is not one this tool reads; did you mean OAUTH_ISSUER?',
      'The .env key "OAUTH-SCOPE" is not one this tool reads; did you mean OAUTH_SCOPE?',
      'The .env key "OAUTH_ISUER" is not one this tool reads; did you mean OAUTH_ISSUER?',
    ],
  );
});

Deno.test("envFilePath() uses INIT_CWD under deno task, and not when it was inherited by a process elsewhere", () => {
  assertEquals(envFilePath(undefined, undefined), ".env");
  assertEquals(envFilePath(undefined, "/repo/sub"), "/repo/sub/.env");
  assertEquals(
    envFilePath(undefined, "/repo/sub", "/repo"),
    "/repo/sub/.env",
    "deno task: cwd is deno.json's directory",
  );
  assertEquals(envFilePath(undefined, "/repo", "/repo"), "/repo/.env");
  assertEquals(envFilePath(undefined, "/repo/sub", "/elsewhere"), ".env", "inherited INIT_CWD");
  assertEquals(envFilePath(undefined, "/repo/sub", "/repo/sub/deeper"), ".env", "inherited INIT_CWD");
  assertEquals(envFilePath("config/dev.env", "/repo/sub", "/repo"), "/repo/sub/config/dev.env");
  assertEquals(envFilePath("/etc/oauth.env", "/repo/sub", "/repo"), "/etc/oauth.env");
});

Deno.test(".env is read from INIT_CWD, --verbose says which file, and a look-alike key is warned about", async () => {
  const result = await run(["whoami", "--verbose"], {
    env: { INIT_CWD: "/home/alice/project/sub" },
    files: {
      ".env": { OAUTH_ISSUER: "https://wrong.example", OAUTH_CLIENT_ID: "wrong" },
      "/home/alice/project/sub/.env": { OAUTH_ISSUER: "https://idp.example/", OAUTH_CLIENTID: "0oa" },
    },
  });
  assertEquals(result.code, EXIT.usage);
  assertStringIncludes( // (--verbose then prints the stack trace)
    result.stderr,
    'trace: read 2 settings from "/home/alice/project/sub/.env"\n' +
      'warning: The .env key "OAUTH_CLIENTID" is not one this tool reads; did you mean OAUTH_CLIENT_ID?\n' +
      "error: No client id is configured\n" +
      "hint: pass --client-id ID or set OAUTH_CLIENT_ID (in the environment or in .env)\n",
  );
  await cleanUp(result);
});

/** A directory inside the repository (so `deno task` finds deno.json above it), removed afterwards. */
async function withSubdirectory(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ dir: ROOT, prefix: ".environment-test-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("deno task run from a subdirectory reads that subdirectory's .env (real deno task)", async () => {
  await withSubdirectory(async (dir) => {
    // As Windows Notepad saves it: a byte order mark and CRLF, with `export` and quotes for good measure.
    Deno.writeTextFileSync(
      `${dir}/.env`,
      "\uFEFFexport OAUTH_ISSUER=\"http://127.0.0.1:9\"\r\nOAUTH_CLIENT_ID='from-subdir'\r\n",
    );
    const env = { OAUTH_LOGIN_CACHE: `${dir}/cache` };
    const whoami = await spawn(Deno.execPath(), ["task", "-q", "whoami", "--verbose"], { cwd: dir, env });
    assertEquals(whoami.code, EXIT.loginRequired, whoami.stderr);
    assertStringIncludes(
      whoami.stderr,
      `trace: read 2 settings from "${dir}/.env"\n` +
        `note: Using the issuer http://127.0.0.1:9 from "${dir}/.env", a project file\n` +
        "error: Not logged in for http://127.0.0.1:9\n" +
        'hint: run "deno task login"\n',
    );
    const doctor = await spawn(Deno.execPath(), ["task", "-q", "doctor"], { cwd: dir, env });
    assertStringIncludes(doctor.stdout, `ok    config     .env: read 2 variables from "${dir}/.env"\n`);
    assertStringIncludes(doctor.stdout, "ok    config     issuer: http://127.0.0.1:9 (from .env)\n");
    assertStringIncludes(doctor.stdout, "ok    config     client id: from-subdir (from .env)\n");
  });
});

// ── 5: Deno permissions ─────────────────────────────────────────────────────────────────────────

Deno.test("--help and --version run under deno run with no permissions at all", async (t) => {
  for (const args of [["--help"], ["--version"], ["token", "--help"], ["-h"]]) {
    await t.step(args.join(" "), async () => {
      const result = await tool(args, {}, ["--no-prompt"]);
      assertEquals(result.code, 0, result.stderr);
      assertEquals(result.stderr, "");
      assertMatch(result.stdout, args.includes("--version") ? /^oauth-login \d+\.\d+\.\d+\n$/ : /^(oauth-login|Usage)/);
    });
  }
});

Deno.test("a missing Deno permission is one sentence naming the flag to add, never a stack trace", async (t) => {
  await withMock(async (mock) => {
    const home = await Deno.makeTempDir();
    const env = { OAUTH_LOGIN_CACHE: `${home}/cache`, OAUTH_ISSUER: mock.issuer, OAUTH_CLIENT_ID: PUBLIC_CLIENT.id };
    const cases: [string, string[], string[], string, string][] = [
      ["no env", ["--no-prompt"], ["token"], 'env access to "INIT_CWD"', "--allow-env=INIT_CWD"],
      [
        "no read",
        ["--no-prompt", "--allow-env"],
        ["token"],
        'read access to ".env"', // the first file it reads
        "--allow-read=.env",
      ],
      [
        "no net",
        ["--no-prompt", "--allow-env", "--allow-read", "--allow-write"],
        ["login", "--no-browser"],
        `net access to "127.0.0.1:${mock.port}"`,
        `--allow-net=127.0.0.1:${mock.port}`,
      ],
    ];
    for (const [name, flags, args, what, flag] of cases) {
      await t.step(name, async () => {
        const result = await tool(args, env, flags);
        assertEquals(result.code, EXIT.usage, result.stderr);
        const lines = result.stderr.trimEnd().split("\n");
        assertEquals(lines.length, 2, result.stderr);
        assertStringIncludes(lines[0], `error: Deno's permissions do not allow ${what}`);
        assertStringIncludes(lines[1], `hint: run again with ${flag}`);
        assertNotMatch(result.stderr, /NotCapable|\n\s+at /);
      });
    }
    await Deno.remove(home, { recursive: true });
  });
});

/** A stand-in browser: a script that loads the URL and follows the redirects with curl (mock approves at once). */
function fakeBrowser(path: string): void {
  Deno.writeTextFileSync(path, '#!/bin/sh\nexec curl -sf -L -o /dev/null "$1"\n', { mode: 0o755 });
}

const curl = (() => {
  try {
    return Deno.statSync("/usr/bin/curl").isFile;
  } catch {
    return false;
  }
})();
if (!curl) console.log("skipping the deno task login tests: /usr/bin/curl (the stand-in browser) is not installed");

Deno.test({
  name: "deno task login works under exactly the task's permissions, with the platform opener and with $BROWSER",
  ignore: !curl || Deno.build.os === "windows",
  fn: async (t) => {
    await withMock(async (mock) => {
      await withSubdirectory(async (dir) => {
        Deno.mkdirSync(`${dir}/bin`);
        fakeBrowser(`${dir}/bin/xdg-open`); // found on PATH, as the real xdg-open would be
        fakeBrowser(`${dir}/my-browser`);
        const env = {
          PATH: `${dir}/bin:${Deno.env.get("PATH")}`,
          DISPLAY: ":0",
          OAUTH_LOGIN_CACHE: `${dir}/cache`,
          OAUTH_ISSUER: mock.issuer,
          OAUTH_CLIENT_ID: PUBLIC_CLIENT.id,
        };
        await t.step("without $BROWSER: the platform opener (xdg-open) is allowed", async () => {
          const result = unwrapped(await spawn(Deno.execPath(), ["task", "-q", "login"], { cwd: dir, env }));
          assertEquals(result.code, EXIT.ok, result.stderr);
          assertMatch(result.stderr, /^Opening your browser to sign in at 127\.0\.0\.1:\d+ \.\.\.\n/);
          assertStringIncludes(result.stderr, "Logged in as alice@example.com\n");
          // No session bus here (a clean environment): the one warning of --token-storage auto, then nothing else.
          const keychain = "warning: Keeping the refresh token in the token cache file (readable only by you), " +
            "not in the keychain: there is no D-Bus session bus here\n";
          assertStringIncludes(result.stderr, keychain);
          assertNotMatch(result.stderr.replace(keychain, ""), /warning|error/);
        });
        await t.step(
          "with $BROWSER and no terminal to ask on: one sentence naming the flag, at once, and the device flow as the way",
          async () => {
            // Deno asks "Allow run access to …?" in a terminal; without one (a pipe, CI) nobody can open the
            // address or paste one back, so the tool says why at once instead of waiting five minutes (issue 23).
            const started = performance.now();
            const output = await new Deno.Command(Deno.execPath(), {
              args: ["task", "-q", "login"],
              cwd: dir,
              clearEnv: true,
              env: {
                ...env,
                HOME: Deno.env.get("HOME") ?? "/tmp",
                DENO_NO_UPDATE_CHECK: "1",
                BROWSER: `${dir}/my-browser`,
              },
              stdin: "null",
              stdout: "piped",
              stderr: "piped",
            }).output();
            const ms = performance.now() - started;
            const stderr = new TextDecoder().decode(output.stderr).replace(/\n {2,}/g, " ");
            assertEquals(output.code, EXIT.loginRequired, stderr);
            assert(ms < 20_000, `said at once: ${ms} ms`);
            assertStringIncludes(
              stderr,
              `error: No browser can be opened here (Deno's permissions do not allow running "${dir}/my-browser": add --allow-run=${dir}/my-browser), and no one at a terminal can open the address or paste one back\n`,
            );
            assertStringIncludes(
              stderr,
              'hint: use the device flow, which needs no browser here: run "deno task login --flow device" where its code can be read\n',
            );
          },
        );
      });
    });
  },
});

// ── 7: DENO_CERT in doctor ──────────────────────────────────────────────────────────────────────

Deno.test("doctor checks that the DENO_CERT file exists and holds PEM certificates that parse", async (t) => {
  const dir = await Deno.makeTempDir();
  const files = {
    good: LOOPBACK_TLS.cert,
    garbage: "not a certificate\n",
    broken: "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
  };
  for (const [name, text] of Object.entries(files)) Deno.writeTextFileSync(`${dir}/${name}.pem`, text);
  const cases: [string, string, string][] = [
    ["good.pem", "ok  ", `DENO_CERT is set to ${dir}/good.pem, which holds PEM certificates`],
    ["missing.pem", "fail", `DENO_CERT is set to ${dir}/missing.pem, which does not exist`],
    [
      "garbage.pem",
      "fail",
      `DENO_CERT is set to ${dir}/garbage.pem, which holds no PEM certificate (BEGIN CERTIFICATE)`,
    ],
    ["broken.pem", "fail", `DENO_CERT is set to ${dir}/broken.pem, whose certificate 1 of 1 does not parse (`],
  ];
  for (const [file, status, message] of cases) {
    await t.step(file, async () => {
      const result = await run(["doctor", "--issuer", "http://127.0.0.1:9", "--client-id", "c"], {
        env: { DENO_CERT: `${dir}/${file}` },
        fetch: () => Promise.reject(new TypeError("offline")),
      });
      assertStringIncludes(result.stdout, `${status}  network    ${message}`);
      assertEquals(result.code, EXIT.failure); // (discovery fails too: the issuer is offline here)
      await cleanUp(result);
    });
  }
  await Deno.remove(dir, { recursive: true });
});

Deno.test("messages about a cached entry name the issuer as the server's metadata does", async () => {
  // An Auth0-style server names its origin issuer with the slash; the person typed it without.
  const home = await Deno.makeTempDir();
  Deno.mkdirSync(`${home}/cache`, { mode: 0o700 });
  const config = { issuer: "https://tenant.example", clientId: "c", scope: undefined, params: [] };
  const entry = {
    version: 1,
    issuer: "https://tenant.example",
    clientId: "c",
    requestedScope: "",
    accessToken: "expired-access-token-value",
    tokenType: "Bearer",
    expiresAt: Date.now() - 60_000,
    authMethod: "none",
    metadata: { issuer: "https://tenant.example/", token_endpoint: "https://tenant.example/oauth/token" },
  };
  Deno.writeTextFileSync(`${home}/cache/${cacheKey(config)}.json`, JSON.stringify(entry), { mode: 0o600 });
  const args = ["--issuer", "https://tenant.example", "--client-id", "c"];
  const token = await run(["token", ...args], { home });
  assertEquals(token.code, EXIT.loginRequired);
  assertStringIncludes(
    token.stderr,
    "error: The cached token has expired and cannot be refreshed for https://tenant.example/\n",
  );
  const whoami = await run(["whoami", ...args], { home });
  assertEquals(whoami.code, EXIT.loginRequired);
  assertStringIncludes(
    whoami.stderr,
    "error: The cached token has expired and cannot be refreshed for https://tenant.example/\n",
  );
  await Deno.remove(home, { recursive: true });
});
