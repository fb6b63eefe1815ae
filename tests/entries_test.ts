/**
 * One way to find and lock an entry (issue 19, §3): `entryFor` answers "which entry is this
 * configuration's" for token, fetch, whoami, logout and profiles; every writer of an entry holds its
 * lock and reads it again under it (logout against a refresh, both ways); the cache reads, locks,
 * writes and deletes only the user's own regular files in a folder others cannot change, and deletes
 * only what the tool created; `logout --all` sends a client secret only to the issuer it was given for.
 *
 * @module
 */
import { EXIT, fileStorage, type Storage, testing, type TokenSet } from "../login.ts";
const { cacheKey, legacyCacheKeys } = testing;
import { CONFIDENTIAL_CLIENT, PUBLIC_CLIENT, type RecordedRequest, type ServedMock } from "./mock_issuer.ts";
import {
  cleanUp,
  exists,
  gate,
  type Run,
  run,
  type RunOptions,
  scriptedBrowser,
  signal,
  withMock,
} from "./_harness.ts";
import { assert, assertEquals, assertMatch, assertStringIncludes } from "./assert.ts";

// ── Helpers ─────────────────────────────────────────────────────────────────────────────────────

const SECRET = CONFIDENTIAL_CLIENT.secret!;

function flags(mock: ServedMock, client = PUBLIC_CLIENT.id): string[] {
  return ["--issuer", mock.issuer, "--client-id", client];
}

/** A browser login at `mock`; fails the case unless it exits 0. */
async function login(mock: ServedMock, extra: string[] = [], options: RunOptions = {}): Promise<Run> {
  const result = await run(["login", ...flags(mock), ...extra], { browser: (url) => scriptedBrowser(url), ...options });
  assertEquals(result.code, EXIT.ok, result.stderr);
  return result;
}

/** The one entry in a home's cache: its path and what it holds. */
async function entryOf(home: string): Promise<{ path: string; name: string; entry: TokenSet }> {
  const names = [...Deno.readDirSync(`${home}/cache`)].map((e) => e.name).filter((n) => n.endsWith(".json"));
  assertEquals(names.length, 1, names.join(", "));
  const path = `${home}/cache/${names[0]}`;
  return { path, name: names[0].slice(0, -5), entry: JSON.parse(await Deno.readTextFile(path)) };
}

/** The names in a home's cache folder. */
function cacheFiles(home: string): string[] {
  return [...Deno.readDirSync(`${home}/cache`)].map((e) => e.name).sort();
}

function refreshes(mock: ServedMock): RecordedRequest[] {
  return mock.calls("token").filter((r) => r.form.grant_type === "refresh_token");
}

/** Two hours on: every cached access token has expired. */
const later = () => Date.now() + 2 * 3600_000;

/** The cache, telling `onLock` when a run asks for an entry's lock (before it waits for it). */
function watched(onLock: () => void): (home: string) => Storage {
  return (home) => {
    const storage = fileStorage(`${home}/cache`);
    return {
      ...storage,
      lock: (name) => {
        onLock();
        return storage.lock(name);
      },
    };
  };
}

/** The request as the mock received it, to hand to its handler again. */
function replay(request: Request, record: RecordedRequest): Request {
  return new Request(request.url, { method: "POST", headers: request.headers, body: new URLSearchParams(record.form) });
}

/** Sets a file's (or a link's own) modification time an hour back, as a leftover from a killed writer. */
async function age(path: string): Promise<void> {
  const touched = await new Deno.Command("touch", { args: ["-h", "-d", "1 hour ago", path] }).output();
  assert(touched.success, new TextDecoder().decode(touched.stderr));
}

// ── Every writer holds the lock: logout against a refresh, both ways ────────────────────────────

Deno.test("logout while another run refreshes the entry waits for it, revokes what it wrote, and the entry stays gone", async () => {
  await withMock(async (mock) => {
    const first = await login(mock);
    const home = first.home;
    try {
      const before = (await entryOf(home)).entry;
      const answered = signal<Record<string, string>>();
      const release = gate();
      const lockAsked = signal();
      // The server issues the new tokens at once; its answer reaches the refreshing run only later.
      mock.intercept = async (record, _url, request) => {
        if (record.form.grant_type !== "refresh_token") return undefined;
        mock.intercept = undefined;
        const answer = await mock.handler(replay(request, record));
        answered.resolve(await answer.clone().json());
        await release.wait;
        return answer;
      };
      const refreshing = run(["token", ...flags(mock)], { home, now: later });
      const issued = await answered.promise;
      const logout = run(["logout", ...flags(mock)], { home, storage: watched(() => lockAsked.resolve()) });
      await Promise.race([logout, lockAsked.promise]);
      release.open();
      const [token, out] = await Promise.all([refreshing, logout]);

      assertEquals(token.code, EXIT.ok, token.stderr);
      assertEquals(token.stdout, `${issued.access_token}\n`, "the refresh finished first");
      assert(issued.refresh_token !== before.refreshToken, "the server rotated the refresh token");
      assertEquals(out.code, EXIT.ok, out.stderr);
      assertEquals(out.stderr, `Logged out of ${mock.issuer}\n`);
      assertEquals(mock.revoked, [issued.refresh_token, issued.access_token], "it revoked what the refresh wrote");
      assert(!mock.accessTokens.has(issued.access_token), "the refreshed access token is dead");
      assertEquals(cacheFiles(home), [], "no entry was written back, and no lock file is left");
      const whoami = await run(["whoami", ...flags(mock)], { home });
      assertEquals(whoami.code, EXIT.loginRequired, whoami.stdout);
    } finally {
      await cleanUp(first);
    }
  }, { rotateRefreshTokens: true });
});

Deno.test("a refresh that waits behind a logout finds no entry: nothing is refreshed or written back", async () => {
  await withMock(async (mock) => {
    const first = await login(mock);
    const home = first.home;
    try {
      const before = (await entryOf(home)).entry;
      const revoking = signal();
      const release = gate();
      const lockAsked = signal();
      mock.intercept = async (record) => {
        if (!record.path.endsWith("/revoke")) return undefined;
        revoking.resolve();
        await release.wait; // the logout holds the entry's lock meanwhile
        return undefined;
      };
      const logout = run(["logout", ...flags(mock)], { home });
      await revoking.promise;
      const refreshing = run(["token", ...flags(mock)], {
        home,
        now: later,
        storage: watched(() => lockAsked.resolve()),
      });
      await Promise.race([refreshing, lockAsked.promise]);
      release.open();
      const [out, token] = await Promise.all([logout, refreshing]);

      assertEquals(out.code, EXIT.ok, out.stderr);
      assertEquals(out.stderr, `Logged out of ${mock.issuer}\n`);
      assertEquals(mock.revoked, [before.refreshToken, before.accessToken]);
      assertEquals(refreshes(mock), [], "no refresh with the tokens being revoked");
      assertEquals(token.code, EXIT.loginRequired, token.stderr);
      assertEquals(token.stdout, "");
      assertEquals(cacheFiles(home), []);
    } finally {
      await cleanUp(first);
    }
  }, { rotateRefreshTokens: true });
});

// ── entryFor: one answer for every command ──────────────────────────────────────────────────────

Deno.test("after login --resource A --resource B, whoami and logout --resource B find that login, and logout says it ends both", async () => {
  await withMock(async (mock) => {
    const [one, two] = ["https://api-one.example/", "https://api-two.example/"];
    const first = await login(mock, ["--resource", one, "--resource", two]);
    const home = first.home;
    try {
      const { entry } = await entryOf(home);
      const whoami = await run(["whoami", ...flags(mock), "--resource", two], { home });
      assertEquals(whoami.code, EXIT.ok, whoami.stderr);
      assertStringIncludes(whoami.stdout, `Logged in to ${mock.issuer} as alice@example.com\n`);
      const token = await run(["token", ...flags(mock), "--resource", two], { home });
      assertEquals(token.code, EXIT.ok, token.stderr);

      const logout = await run(["logout", ...flags(mock), "--resource", two], { home });
      assertEquals(logout.code, EXIT.ok, logout.stderr);
      assertEquals(
        logout.stderr,
        `Logged out of ${mock.issuer}: the login for "${two}" also covered "${one}" (one grant), so that is logged out too\n`,
      );
      assertEquals(mock.revoked, [entry.refreshToken, entry.accessToken, token.stdout.trim()]);
      assertEquals(cacheFiles(home), []);
      const other = await run(["token", ...flags(mock), "--resource", one], { home });
      assertEquals(other.code, EXIT.loginRequired, other.stderr);
    } finally {
      await cleanUp(first);
    }
  });
});

Deno.test("an entry under the older cache key is used by fetch, whoami and logout alike", async () => {
  await withMock(async (mock) => {
    const first = await login(mock);
    const home = first.home;
    try {
      const config = { issuer: mock.issuer, clientId: PUBLIC_CLIENT.id, scope: undefined, params: [] };
      const [legacy] = legacyCacheKeys(config);
      const { path, entry } = await entryOf(home);
      // What an earlier version wrote: the same entry, under the name its slashed issuer hashed to.
      await Deno.writeTextFile(
        `${home}/cache/${legacy}.json`,
        JSON.stringify({ ...entry, issuer: `${mock.issuer}/` }),
        {
          mode: 0o600,
        },
      );
      await Deno.remove(path);
      assertEquals(path, `${home}/cache/${cacheKey(config)}.json`);

      const fetched = await run(["fetch", ...flags(mock), `${mock.issuer}/userinfo`], { home });
      assertEquals(fetched.code, EXIT.ok, fetched.stderr);
      assertEquals(JSON.parse(fetched.stdout).sub, "00u1alice");
      const whoami = await run(["whoami", ...flags(mock)], { home });
      assertEquals(whoami.code, EXIT.ok, whoami.stderr);
      const logout = await run(["logout", ...flags(mock)], { home });
      assertEquals(logout.stderr, `Logged out of ${mock.issuer}\n`);
      assertEquals(mock.revoked, [entry.refreshToken, entry.accessToken]);
      assertEquals(cacheFiles(home), []);
    } finally {
      await cleanUp(first);
    }
  });
});

Deno.test("whoami --all names an entry it refuses in one warning line and lists the others (exit 0)", async () => {
  await withMock(async (mock) => {
    const first = await login(mock);
    const home = first.home;
    try {
      await login(mock, ["--scope", "openid"], { home });
      await login(mock, ["--scope", "openid profile"], { home });
      const names = cacheFiles(home);
      assertEquals(names.length, 3, names.join(", "));
      const shared = `${home}/cache/${names[1]}`;
      await Deno.chmod(shared, 0o640);
      const all = await run(["whoami", "--all"], { home });
      assertEquals(all.code, EXIT.ok, all.stderr);
      assertEquals(
        all.stderr,
        `warning: The token cache file "${shared}" can be read by other users; it is skipped (make it private with: chmod 600 ${shared})\n`,
      );
      const rows = all.stdout.trimEnd().split("\n");
      assertEquals(rows.length, 3, all.stdout);
      assertMatch(rows[0], /^PROFILE +ISSUER +CLIENT +USER +TOKEN +SECRETS$/);
      for (const row of rows.slice(1)) assertStringIncludes(row, "alice@example.com");
    } finally {
      await cleanUp(first);
    }
  });
});

Deno.test("profiles completes each profile with the environment and .env as any command would", async (t) => {
  await withMock(async (mock) => {
    const home = await Deno.makeTempDir({ prefix: "oauth-login-entries-" });
    try {
      await Deno.mkdir(`${home}/config/oauth-login`, { recursive: true, mode: 0o700 });
      await Deno.writeTextFile(`${home}/config/oauth-login/config.toml`, `[work]\nissuer = "${mock.issuer}"\n`, {
        mode: 0o600,
      });
      await t.step("OAUTH_CLIENT_ID in the environment", async () => {
        const env = { OAUTH_CLIENT_ID: PUBLIC_CLIENT.id };
        const signedIn = await run(["login", "--profile", "work"], { home, env, browser: scriptedBrowser });
        assertEquals(signedIn.code, EXIT.ok, signedIn.stderr);
        const profiles = await run(["profiles", "--json"], { home, env });
        assertEquals(profiles.code, EXIT.ok, profiles.stderr);
        const [row] = JSON.parse(profiles.stdout).profiles;
        assertEquals([row.name, row.issuer, row.user, row.state], ["work", mock.issuer, "alice@example.com", "valid"]);
        const table = await run(["profiles"], { home, env });
        assertMatch(
          table.stdout,
          /\n {3}work +http:\/\/127\.0\.0\.1:\d+ +alice@example\.com +valid, expires in 60 minutes\n$/,
        );
      });
      await t.step("OAUTH_CLIENT_ID in .env: profiles says what whoami --profile says", async () => {
        // Whatever the rule for what a .env may decide, profiles follows the one every command follows.
        const files = { ".env": { OAUTH_CLIENT_ID: PUBLIC_CLIENT.id } };
        const whoami = await run(["whoami", "--profile", "work"], { home, files });
        const [row] = JSON.parse((await run(["profiles", "--json"], { home, files })).stdout).profiles;
        const states: Record<number, string> = {
          [EXIT.ok]: "valid",
          [EXIT.usage]: "invalid",
          [EXIT.loginRequired]: "logged_out",
        };
        assertEquals(row.state, states[whoami.code], whoami.stderr);
      });
    } finally {
      await Deno.remove(home, { recursive: true });
    }
  });
});

// ── logout --all: a secret goes only to the issuer it was given for ────────────────────────────

Deno.test("logout --all sends the configured client secret only to the issuer it was given for", async () => {
  await withMock(async (mine) => {
    await withMock(async (other) => {
      const env = { OAUTH_CLIENT_SECRET: SECRET };
      const first = await run(["login", ...flags(mine, CONFIDENTIAL_CLIENT.id)], { env, browser: scriptedBrowser });
      assertEquals(first.code, EXIT.ok, first.stderr);
      const home = first.home;
      try {
        const second = await run(["login", ...flags(other, CONFIDENTIAL_CLIENT.id)], {
          env,
          home,
          browser: scriptedBrowser,
        });
        assertEquals(second.code, EXIT.ok, second.stderr);

        const all = await run(["logout", "--all"], {
          home,
          env: { OAUTH_ISSUER: mine.issuer, OAUTH_CLIENT_ID: CONFIDENTIAL_CLIENT.id, OAUTH_CLIENT_SECRET: SECRET },
        });
        assertEquals(all.code, EXIT.failure, all.stderr);
        assertEquals(
          mine.calls("revoke").map((r) => r.clientAuth),
          ["client_secret_basic", "client_secret_basic"],
          "the issuer the secret was given for revokes with it",
        );
        assertEquals(other.calls("revoke"), [], "the other issuer never sees the secret");
        assertStringIncludes(
          all.stderr,
          `Logged out of ${other.issuer} (client cli-confidential): removed here, not revoked: its client secret is not configured\n`,
        );
        assertStringIncludes(
          all.stderr,
          `Logged out of ${mine.issuer} (client cli-confidential): revoked at the server and removed here\n`,
        );
        assertEquals(cacheFiles(home), []);
      } finally {
        await cleanUp(first);
      }
    });
  });
});

// ── Only the user's own files: links, other owners, a shared folder ─────────────────────────────

Deno.test("entries, lock files and temporary files that are links or another user's are never followed, written through or sent a secret", async (t) => {
  await withMock(async (mock) => {
    await withMock(async (evil) => {
      const env = { OAUTH_CLIENT_SECRET: SECRET };
      const args = flags(mock, CONFIDENTIAL_CLIENT.id);
      const first = await run(["login", ...args], { env, browser: scriptedBrowser });
      assertEquals(first.code, EXIT.ok, first.stderr);
      const home = first.home;
      const { path, name, entry } = await entryOf(home);
      const real = await Deno.readTextFile(path);
      // What another user would plant: the user's own login, but refreshed and revoked at their server.
      const at = (endpoint: string) => `${evil.issuer}/${endpoint}`;
      const planted = JSON.stringify({
        ...entry,
        expiresAt: Date.now() - 1000,
        metadata: { ...entry.metadata, token_endpoint: at("token"), revocation_endpoint: at("revoke") },
      });
      const nothingSent = () => {
        assertEquals(evil.requests, [], "nothing reached an endpoint named by a file the tool did not write");
        assertEquals(mock.calls("revoke"), []);
        assertEquals(refreshes(mock), []);
      };
      const refusedWith = (result: Run, message: string, hint: string) => {
        assertEquals(result.code, EXIT.usage, result.stderr);
        assertEquals(result.stdout, "");
        assertEquals(result.stderr, `error: ${message}\nhint: ${hint}\n`);
      };
      try {
        await t.step("a symlinked entry", async () => {
          await Deno.writeTextFile(`${home}/planted.json`, planted, { mode: 0o600 });
          await Deno.remove(path);
          await Deno.symlink(`${home}/planted.json`, path);
          const message = `The token cache file "${path}" is a symbolic link, which the tool does not follow`;
          const hint = `remove it with: rm ${path}`;
          for (const command of ["token", "whoami", "logout"]) {
            refusedWith(await run([command, ...args], { home, env }), message, hint);
          }
          const again = await run(["login", ...args], { home, env, browser: scriptedBrowser });
          refusedWith(again, message, hint);
          assertEquals(again.opened, [], "refused before the browser opens");
          nothingSent();
          assert((await Deno.lstat(path)).isSymlink, "the link is left as it is");
          assertEquals(await Deno.readTextFile(`${home}/planted.json`), planted, "its target is untouched");
          await Deno.remove(path);
        });

        await t.step("an entry another user owns", async () => {
          await Deno.writeTextFile(path, planted, { mode: 0o600 });
          await Deno.chown(path, 65534, 65534);
          const message = `The token cache file "${path}" belongs to another user`;
          const hint = `if it is not needed, remove it with: rm ${path}`;
          for (const command of ["token", "whoami", "logout"]) {
            refusedWith(await run([command, ...args], { home, env }), message, hint);
          }
          const all = await run(["logout", "--all"], { home, env });
          assertEquals(all.code, EXIT.ok, all.stderr);
          assertEquals(
            all.stderr,
            `warning: ${message}; it was left as it is (${hint})\nNot logged in anywhere; nothing to do\n`,
          );
          nothingSent();
          assertEquals((await Deno.lstat(path)).uid, 65534);
          assertEquals(await Deno.readTextFile(path), planted, "neither removed nor rewritten");
          await Deno.remove(path);
        });

        await t.step("a symlinked lock file", async () => {
          await Deno.writeTextFile(path, real, { mode: 0o600 });
          const lock = `${home}/cache/${name}.lock`;
          await Deno.symlink(`${home}/victim`, lock);
          const message = `The token cache file "${lock}" is a symbolic link, which the tool does not follow`;
          const hint = `remove it with: rm ${lock}`;
          refusedWith(await run(["token", ...args], { home, env, now: later }), message, hint);
          refusedWith(await run(["logout", ...args], { home, env }), message, hint);
          assertEquals(await exists(`${home}/victim`), false, "nothing was created through the link");
          nothingSent();
          assertEquals(await Deno.readTextFile(path), real, "the entry is kept");
          await Deno.remove(lock);
        });

        await t.step("a symlinked temporary file", async () => {
          await Deno.writeTextFile(`${home}/victim`, "keep");
          const temporary = `${path}.${"0".repeat(32)}.tmp`;
          await Deno.symlink(`${home}/victim`, temporary);
          await age(temporary);
          const renewed = await run(["token", ...args], { home, env, now: later });
          assertEquals(renewed.code, EXIT.ok, renewed.stderr);
          assertEquals(refreshes(mock).length, 1, "the entry was refreshed and saved");
          assert((await Deno.lstat(temporary)).isSymlink, "the link is left as it is");
          assertEquals(await Deno.readTextFile(`${home}/victim`), "keep");
          await Deno.remove(temporary);
        });
      } finally {
        await cleanUp(first);
      }
    });
  });
});

Deno.test("a cache folder others can change, or another user's, is refused with what to do", async (t) => {
  await withMock(async (mock) => {
    const first = await login(mock);
    const home = first.home;
    const dir = `${home}/cache`;
    try {
      await t.step("writable by others (0777, 0770)", async () => {
        for (const mode of [0o777, 0o770]) {
          await Deno.chmod(dir, mode);
          const commands = [["token"], ["whoami"], ["logout"], ["login"], ["whoami", "--all"], ["logout", "--all"]];
          for (const command of commands) {
            const args = command.includes("--all") ? command : [...command, ...flags(mock)];
            const result = await run(args, { home, browser: scriptedBrowser });
            assertEquals(result.code, EXIT.usage, result.stderr);
            assertEquals(result.opened, []);
            assertEquals(
              result.stderr,
              `error: The token cache folder "${dir}" can be changed by other users\n` +
                `hint: make it private with: chmod 700 ${dir}; or point OAUTH_LOGIN_CACHE at a folder of your own\n`,
            );
          }
        }
        await Deno.chmod(dir, 0o700);
      });
      await t.step("another user's", async () => {
        await Deno.chown(dir, 65534, 65534);
        const result = await run(["token", ...flags(mock)], { home });
        assertEquals(result.code, EXIT.usage, result.stderr);
        assertEquals(
          result.stderr,
          `error: The token cache folder "${dir}" belongs to another user\n` +
            `hint: point OAUTH_LOGIN_CACHE at a folder of your own (or set HOME)\n`,
        );
        await Deno.chown(dir, 0, 0);
      });
      assertEquals(mock.calls("revoke"), []);
      assertEquals(refreshes(mock), []);
    } finally {
      await cleanUp(first);
    }
  });
});

// ── Only what the tool created is deleted ───────────────────────────────────────────────────────

Deno.test("logout --all and every save leave the other files of the cache folder intact", async () => {
  await withMock(async (mock) => {
    const first = await login(mock);
    const home = first.home;
    try {
      const others: Record<string, string> = {
        "notes.json": '{"mine": true}\n',
        "backup.tmp": "a backup\n",
        "x.json.tmp": "half a file\n",
        "data.lock": "",
      };
      for (const [name, text] of Object.entries(others)) {
        await Deno.writeTextFile(`${home}/cache/${name}`, text, { mode: 0o600 });
        await age(`${home}/cache/${name}`);
      }
      const renewed = await run(["token", ...flags(mock)], { home, now: later }); // a refresh saves
      assertEquals(renewed.code, EXIT.ok, renewed.stderr);
      await login(mock, [], { home }); // so does a login
      const all = await run(["whoami", "--all"], { home });
      assertEquals([all.code, all.stderr], [EXIT.ok, ""]);
      const logout = await run(["logout", "--all"], { home });
      assertEquals(logout.code, EXIT.ok, logout.stderr);
      assertEquals(
        logout.stderr,
        `Logged out of ${mock.issuer} (client cli-public): revoked at the server and removed here\n`,
      );
      assertEquals(cacheFiles(home), Object.keys(others).sort());
      for (const [name, text] of Object.entries(others)) {
        assertEquals(await Deno.readTextFile(`${home}/cache/${name}`), text, name);
      }
    } finally {
      await cleanUp(first);
    }
  });
});

// ── The user is known under the tasks' permissions (red team, finding 6) ────────────────────────

/** Whether the tests run as root (without asking Deno for the uid: the test task grants no sys permission). */
function asRoot(): boolean {
  const probe = Deno.makeTempFileSync({ prefix: "oauth-login-uid-" });
  try {
    return Deno.statSync(probe).uid === 0;
  } finally {
    Deno.removeSync(probe);
  }
}

Deno.test("every permission set of deno.json, and the compiled binary, grant sys uid: the ownership rules know who the user is", async () => {
  const config = JSON.parse(await Deno.readTextFile(new URL("../deno.json", import.meta.url)));
  for (const [name, set] of Object.entries(config.permissions as Record<string, { sys?: string[] }>)) {
    assertEquals(set.sys, ["uid"], `the "${name}" permission set`);
  }
  assertStringIncludes(config.tasks.compile, " --allow-sys=uid ");
});

Deno.test(
  "root under the tasks' permissions knows its uid: another user's cache folder and planted fresh entry are refused (red team, finding 6)",
  { ignore: Deno.build.os !== "linux" || !asRoot() },
  async () => {
    const dir = await Deno.makeTempDir({ prefix: "oauth-login-redteam-" });
    try {
      // Another user (nobody) owns the cache folder (0755) and an owner-only entry with a fresh token.
      const issuer = "https://idp.example.com";
      const key = testing.cacheKey({ issuer, clientId: "c", scope: undefined, params: [] });
      const now = Date.now();
      await Deno.writeTextFile(
        `${dir}/${key}.json`,
        JSON.stringify({
          version: 1,
          issuer,
          clientId: "c",
          requestedScope: "",
          accessToken: "PLANTED",
          tokenType: "Bearer",
          expiresAt: now + 3_600_000,
          issuedAt: now,
          user: "mallory",
          authMethod: "none",
          metadata: { issuer, token_endpoint: "https://evil.example/token" },
        }),
        { mode: 0o600 },
      );
      await Deno.chmod(dir, 0o755);
      for (const path of [dir, `${dir}/${key}.json`]) await Deno.chown(path, 65534, 65534);
      const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
        // Exactly the "token" task's permissions (deno.json "login" set: no sys, so the uid is unknown).
        args: [
          "run",
          "-q",
          "-P=login",
          new URL("../login.ts", import.meta.url).pathname,
          "token",
          "--issuer",
          issuer,
          "--client-id",
          "c",
        ],
        cwd: new URL("..", import.meta.url).pathname,
        env: { OAUTH_LOGIN_CACHE: dir },
        stdin: "null",
      }).output();
      const out = new TextDecoder().decode(stdout);
      assert(
        !out.includes("PLANTED"),
        `root printed another user's planted token: ${out}${new TextDecoder().decode(stderr)}`,
      );
      assertEquals(code, EXIT.usage);
      assertStringIncludes(
        new TextDecoder().decode(stderr).replace(/\s+/g, " "),
        `error: The token cache folder "${dir}" belongs to another user`,
      );
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);
