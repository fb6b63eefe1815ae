/**
 * Guards of the seams (issue 19, section 5): each test goes red when its property is broken, and
 * `deno task mutants` (tests/mutants.ts) shows that it does, one breakage at a time.
 *
 * - the device flow shows or opens only an https verification address (http only on loopback);
 * - scopes are compared as whole tokens, never as substrings;
 * - `--save-profile` writes no secret, whatever a `--param` is called: only public authorization
 *   parameters are saved, and the others are named;
 * - Ctrl-C during a refresh leaves the complete new entry (the rotated refresh token kept), never a
 *   torn file, no temporary file, and the lock free; a real SIGINT is caught rather than fatal.
 *
 * (Google's accepted `iss` values are guarded in tests/providers_test.ts, beside its personality.)
 *
 * @module
 */
import { assert, assertEquals, assertStringIncludes } from "./assert.ts";
import { EXIT, fileStorage, type Storage } from "../login.ts";
import { PUBLIC_CLIENT, type ServedMock } from "./mock_issuer.ts";
import {
  cleanUp,
  filesUnder,
  gate,
  grantOnlyOnce,
  reshapeAnswer,
  run,
  type RunOptions,
  scriptedBrowser,
  signal,
  within,
  withMock,
} from "./_harness.ts";

function flags(mock: ServedMock, ...extra: string[]): string[] {
  return ["--issuer", mock.issuer, "--client-id", PUBLIC_CLIENT.id, ...extra];
}

// ── The device flow's verification address ─────────────────────────────────────────────────────

Deno.test("the device flow refuses a verification address that is not https, before showing or opening it", async (t) => {
  const rows: [string, string][] = [
    ["verification_uri", "http://evil.example/device"],
    ["verification_uri", "javascript:alert(1)"],
    ["verification_uri", "file:///etc/passwd"],
    ["verification_uri", "ftp://evil.example/device"],
    ["verification_uri_complete", "http://evil.example/device?user_code=WDJB-MJHT"],
    ["verification_uri_complete", "data:text/html,<h1>sign in</h1>"],
  ];
  for (const [field, value] of rows) {
    await t.step(`${field} = ${value}`, async () => {
      await withMock(async (mock) => {
        reshapeAnswer(mock, "/device_authorization", (body) => ({ ...body, [field]: value }));
        const result = await run(flags(mock, "--flow", "device"), { sleep: () => Promise.resolve() });
        await cleanUp(result);
        assertEquals(result.code, EXIT.failure);
        assertEquals(
          result.stderr,
          `error: The server's "${field}" is not an https URL: "${new URL(value).href}"\nhint: use --flow browser\n`,
        );
        assertEquals(result.opened, [], "nothing was opened");
        assertEquals(mock.calls("token").length, 0, "no poll");
      });
    });
  }
  await t.step("https on any host is shown, with its host named; the address without the code is opened", async () => {
    await withMock(async (mock) => {
      reshapeAnswer(mock, "/device_authorization", (body) => ({
        ...body,
        verification_uri: "https://login.example.net/device",
        verification_uri_complete: "https://login.example.net/device?user_code=WDJB-MJHT",
      }));
      const result = await run(flags(mock, "--flow", "device"), { sleep: () => Promise.resolve() });
      await cleanUp(result);
      assertEquals(result.code, EXIT.ok, result.stderr);
      assertStringIncludes(
        result.stderr,
        "Or open this address, which carries the code: https://login.example.net/device?user_code=WDJB-MJHT\n",
      );
      assertStringIncludes(result.stderr, "Check that the address is your provider's (login.example.net)");
      // An opener's arguments are there for any local user to read: never the code.
      assertEquals(result.opened, ["https://login.example.net/device"]);
    });
  });
});

// ── Scopes: whole tokens ────────────────────────────────────────────────────────────────────────

/** A login by the scripted browser; its temporary home is removed afterwards. */
async function logIn(args: string[], options: RunOptions = {}) {
  const result = await run(args, { browser: scriptedBrowser, ...options });
  await cleanUp(result);
  assertEquals(result.code, EXIT.ok, result.stderr);
  return result;
}

Deno.test("scopes are compared as whole tokens, never as parts of one", async (t) => {
  const narrowed: [string, string, string][] = [
    ["read write", "readwrite", "read write"],
    ["read write", "read:all write", "read"],
    ["api", "api.readonly", "api"],
    ["email", "https://www.googleapis.com/auth/userinfo.emailx", "email"],
  ];
  for (const [asked, granted, missing] of narrowed) {
    await t.step(`asked "${asked}", granted "${granted}": "${missing}" is named as not granted`, async () => {
      await withMock(async (mock) => {
        grantOnlyOnce(mock, granted);
        const result = await logIn(flags(mock, "--scope", asked));
        assertStringIncludes(result.stderr, `warning: The server did not grant ${missing}\n`);
      });
    });
  }
  await t.step("a granted long form (Google's userinfo.email for email) is the same scope", async () => {
    await withMock(async (mock) => {
      grantOnlyOnce(mock, "https://www.googleapis.com/auth/userinfo.email");
      const result = await logIn(flags(mock, "--scope", "email"));
      assert(!result.stderr.includes("did not grant"), result.stderr);
    });
  });
  await t.step("a nonce goes with the scope openid, not with openidconnect", async () => {
    await withMock(async (mock) => {
      await logIn(flags(mock, "--scope", "openidconnect profile"));
      await logIn(flags(mock, "--scope", "profile openid"));
      const [without, openid] = mock.calls("authorize");
      assertEquals(without.query.nonce, undefined);
      assert(openid.query.nonce, "a nonce for openid");
    });
  });
  await t.step("no_offline_access is not offline_access: the remedy is to ask for it", async () => {
    await withMock(async (mock) => {
      const result = await logIn(flags(mock, "--scope", "openid no_offline_access"));
      assertStringIncludes(
        result.stderr,
        "note: The server issued no refresh token, so you will sign in again when this token expires; ask for one by adding offline_access to --scope\n",
      );
    });
  });
});

// ── --save-profile never writes a secret ────────────────────────────────────────────────────────

Deno.test("--save-profile saves only public authorization parameters and names the others", async () => {
  await withMock(async (mock) => {
    const secrets = {
      api_key: "k-0123456789abcdef",
      token: "t-0123456789abcdef",
      access_token: "a-0123456789abcdef",
      refresh_token: "r-0123456789abcdef",
      assertion: "eyJhbGciOi.assertion",
      "X-Custom": "c-0123456789abcdef",
    };
    const kept = { audience: "https://api.example.com", login_hint: "alice@example.com", acr_values: "mfa" };
    const params = [...Object.entries(secrets), ...Object.entries(kept)].flatMap(([k, v]) => ["--param", `${k}=${v}`]);
    const result = await run(["login", ...flags(mock, ...params, "--save-profile", "work")], {
      browser: scriptedBrowser,
    });
    try {
      assertEquals(result.code, EXIT.ok, result.stderr);
      const path = `${result.home}/config/oauth-login/config.toml`;
      assertStringIncludes(
        result.stderr,
        `Saved the profile "work" in ${path}; use it with --profile work\n` +
          'note: The parameters "api_key", "token", "access_token", "refresh_token", "assertion" and "X-Custom" ' +
          "were not saved: a profile keeps only public authorization parameters, as any other may be a secret; " +
          "give them with --param at each login\n",
      );
      // The login itself used every parameter.
      const query = mock.calls("authorize")[0].query;
      for (const [name, value] of Object.entries({ ...secrets, ...kept })) assertEquals(query[name], value, name);
      assertEquals(
        await Deno.readTextFile(path),
        `[work]\nissuer = "${mock.issuer}"\nclient_id = "${PUBLIC_CLIENT.id}"\n\n[work.params]\n` +
          'audience = "https://api.example.com"\nlogin_hint = "alice@example.com"\nacr_values = "mfa"\n',
      );
    } finally {
      await cleanUp(result);
    }
  });
});

// ── Ctrl-C during a refresh ─────────────────────────────────────────────────────────────────────

/** A logged-in cache whose entry has expired, at a mock that rotates refresh tokens. */
async function expiredEntry(mock: ServedMock, dir: string): Promise<{ name: string; old: Record<string, unknown> }> {
  const storage = fileStorage(dir);
  const login = await run(flags(mock), { browser: scriptedBrowser, storage: () => storage });
  await cleanUp(login);
  assertEquals(login.code, EXIT.ok, login.stderr);
  const [name] = await storage.list();
  const old = { ...JSON.parse((await storage.read(`${name}.json`))!), expiresAt: Date.now() - 1000 };
  await storage.write(`${name}.json`, JSON.stringify(old, null, 2) + "\n");
  return { name, old };
}

/**
 * What a refresh cut short by Ctrl-C must leave: the complete new entry (its rotated refresh token
 * still alive at the server, the old one used up), no temporary file, and the entry's lock free.
 */
async function assertRefreshKept(mock: ServedMock, dir: string, name: string, old: Record<string, unknown>) {
  const entry = JSON.parse(await Deno.readTextFile(`${dir}/${name}.json`));
  assert(entry.accessToken !== old.accessToken, "the entry is the new one");
  assert(mock.accessTokens.has(entry.accessToken), "the new access token is live");
  assertEquals(mock.refreshTokens.get(entry.refreshToken)?.used, false, "the rotated refresh token was kept");
  assertEquals(mock.refreshTokens.get(old.refreshToken as string)?.used, true);
  assertEquals((await Deno.stat(`${dir}/${name}.json`)).mode! & 0o777, 0o600);
  const others = (await filesUnder(dir)).filter((file) => file !== `${name}.json` && file !== `${name}.lock`);
  assertEquals(others, [], "no temporary file is left");
  const lock = await within(fileStorage(dir).lock(name), 2_000, "taking the entry's lock after the Ctrl-C");
  lock.release();
}

Deno.test("Ctrl-C during a refresh keeps the complete new entry, and no temporary file", async (t) => {
  const moments: [string, (abort: () => void, mock: ServedMock, dir: string) => Storage][] = [
    ["while the server's answer is on its way", (abort, mock, dir) => {
      mock.intercept = (record) => {
        if (record.form.grant_type === "refresh_token") abort(); // Ctrl-C, then the answer goes out
        return undefined;
      };
      return fileStorage(dir);
    }],
    [
      "between writing the new entry and putting it in place",
      (abort, _mock, dir) => fileStorage(dir, { beforeRename: () => Promise.resolve(abort()) }),
    ],
  ];
  for (const [moment, prepare] of moments) {
    await t.step(moment, async () => {
      await withMock(async (mock) => {
        const dir = await Deno.makeTempDir({ prefix: "oauth-login-guards-" });
        try {
          const { name, old } = await expiredEntry(mock, dir);
          const controller = new AbortController();
          const storage = prepare(() => controller.abort(), mock, dir);
          const result = await run(["token", ...flags(mock)], { controller, storage: () => storage });
          await cleanUp(result);
          assertEquals(
            { code: result.code, stdout: result.stdout, stderr: result.stderr },
            { code: EXIT.interrupted, stdout: "", stderr: "error: Interrupted\n" },
          );
          await assertRefreshKept(mock, dir, name, old);
        } finally {
          await Deno.remove(dir, { recursive: true });
        }
      }, { rotateRefreshTokens: true });
    });
  }
});

Deno.test(
  "a real Ctrl-C (SIGINT) to a token process during its refresh is caught: the complete new entry is kept",
  { ignore: Deno.build.os === "windows" },
  async () => {
    await withMock(async (mock) => {
      const dir = await Deno.makeTempDir({ prefix: "oauth-login-guards-" });
      const answer = gate();
      try {
        const { name, old } = await expiredEntry(mock, dir);
        const refreshing = signal();
        mock.intercept = async (record) => {
          if (record.form.grant_type !== "refresh_token") return undefined;
          refreshing.resolve();
          await answer.wait;
          return undefined;
        };
        const child = new Deno.Command(Deno.execPath(), {
          args: [
            "run",
            "--quiet",
            "--allow-net",
            "--allow-env",
            "--allow-read",
            "--allow-write",
            "--allow-run",
            new URL("../login.ts", import.meta.url).pathname,
            "token",
            ...flags(mock),
          ],
          env: { OAUTH_LOGIN_CACHE: dir, NO_COLOR: "1", OAUTH_TOKEN_STORAGE: "file" },
          stdin: "null",
          stdout: "piped",
          stderr: "piped",
        }).spawn();
        const output = child.output();
        await within(refreshing.promise, 10_000, "the refresh request");
        child.kill("SIGINT");
        answer.open();
        const { code, signal: killedBy, stdout, stderr } = await within(output, 10_000, "the token process");
        const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
        assertEquals(killedBy, null, "SIGINT did not kill the process in the middle of its refresh");
        const entry = JSON.parse(await Deno.readTextFile(`${dir}/${name}.json`));
        // The Ctrl-C ends the run (130), unless the refresh had finished by the time it was seen (0).
        if (code === EXIT.ok) assertEquals(text(stdout), `${entry.accessToken}\n`);
        else assertEquals([code, text(stdout), text(stderr)], [EXIT.interrupted, "", "error: Interrupted\n"]);
        await assertRefreshKept(mock, dir, name, old);
      } finally {
        answer.open();
        await Deno.remove(dir, { recursive: true });
      }
    }, { rotateRefreshTokens: true });
  },
);
