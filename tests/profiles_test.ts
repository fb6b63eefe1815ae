/**
 * Profiles (issue 16): named logins in one config file, chosen by `--profile`, `OAUTH_PROFILE` (from
 * the environment or a directory's `.env`) or `default_profile`; two accounts at one issuer and client
 * kept apart; `--save-profile`, `profiles` and `whoami --all`.
 *
 * @module
 */
import { type Config, EXIT, testing } from "../login.ts";
const { cacheKey, configPath, replaceProfileText } = testing;
import { ALICE, CONFIDENTIAL_CLIENT, type MockUser, PUBLIC_CLIENT, type ServedMock } from "./mock_issuer.ts";
import {
  assertNoLeaks,
  cleanUp,
  type Run,
  run,
  type RunOptions,
  scriptedBrowser,
  secretsOf,
  withMock,
} from "./_harness.ts";
import { assert, assertEquals, assertMatch, assertNotMatch, assertStringIncludes } from "./assert.ts";

const BOB: MockUser = { sub: "00u2bob", username: "bob@example.com", email: "bob@example.com", name: "Bob" };

/** A fresh temporary home with `text` as its config file (`$XDG_CONFIG_HOME/oauth-login/config.toml`). */
async function homeWith(text?: string): Promise<{ home: string; path: string }> {
  const home = await Deno.makeTempDir({ prefix: "oauth-login-profiles-" });
  const path = `${home}/config/oauth-login/config.toml`;
  if (text !== undefined) {
    await Deno.mkdir(`${home}/config/oauth-login`, { recursive: true, mode: 0o700 });
    await Deno.writeTextFile(path, text, { mode: 0o600 });
  }
  return { home, path };
}

/** Runs in `home` with a scripted browser that approves. */
function runIn(home: string, args: string[], options: RunOptions = {}): Promise<Run> {
  return run(args, { home, browser: (url) => scriptedBrowser(url), ...options });
}

/** The access token a run printed, and whom the mock issued it to. */
function tokenOwner(mock: ServedMock, result: Run): string | undefined {
  return mock.accessTokens.get(result.stdout.trim())?.sub;
}

function twoAccounts(mock: ServedMock): string {
  return `# two accounts at one issuer and client
default_profile = "user"

[admin]
issuer = "${mock.issuer}"
client_id = "${PUBLIC_CLIENT.id}"
login_hint = "${BOB.username}"

[user]
issuer = "${mock.issuer}"
client_id = "${PUBLIC_CLIENT.id}"
login_hint = "${ALICE.username}"
`;
}

Deno.test("login --profile takes the profile's settings from the config file into the authorization request", async () => {
  await withMock(async (mock) => {
    const { home } = await homeWith(`[work]
issuer = "${mock.issuer}"
client_id = "${PUBLIC_CLIENT.id}"
scope = "openid email offline_access"
prompt = "consent"
login_hint = "alice@example.com"
timeout = 30
[work.params]
audience = "https://api.example.com"

[home]
issuer = "https://accounts.example.org"
client_id = "other"
`);
    const login = await runIn(home, ["login", "--profile", "work"]);
    assertEquals(login.code, EXIT.ok, login.stderr);
    assertStringIncludes(login.stderr, "Logged in as alice@example.com\n");
    const query = mock.calls("authorize")[0].query;
    assertEquals(
      [query.client_id, query.scope, query.prompt, query.login_hint, query.audience],
      [PUBLIC_CLIENT.id, "openid email offline_access", "consent", "alice@example.com", "https://api.example.com"],
    );
    const token = await run(["token", "--profile", "work"], { home });
    assertEquals(token.code, EXIT.ok, token.stderr);
    assertEquals(tokenOwner(mock, token), ALICE.sub, "token finds the profile's cache entry");
    assertEquals(mock.calls("token").length, 1, "the cached token needed no request");
    const plain = await run(["token", "--issuer", mock.issuer, "--client-id", PUBLIC_CLIENT.id], { home });
    assertEquals(plain.code, EXIT.loginRequired, "the same issuer and client without the profile is another entry");
    assertEquals(plain.stdout, "");
    await cleanUp(login);
  });
});

Deno.test("precedence: flag > environment > .env > profile > default, and doctor says where each came from", async (t) => {
  await withMock(async (mock) => {
    const { home, path } = await homeWith(`[work]
issuer = "${mock.issuer}"
client_id = "${PUBLIC_CLIENT.id}"
scope = "openid from-profile"
prompt = "consent"
params = { audience = "https://profile.example.com", acr_values = "mfa" }
`);
    const doctor = async (args: string[], options: RunOptions = {}) => {
      const result = await run(["doctor", "--profile", "work", ...args], { home, ...options });
      assertEquals(result.code, EXIT.ok, result.stdout + result.stderr);
      return result.stdout;
    };
    await t.step("the profile alone", async () => {
      const out = await doctor([]);
      assertStringIncludes(out, `ok    config     profile: work (from --profile) in ${path}\n`);
      assertStringIncludes(out, `ok    config     issuer: ${mock.issuer} (from profile)\n`);
      assertStringIncludes(out, `ok    config     client id: ${PUBLIC_CLIENT.id} (from profile)\n`);
      assertStringIncludes(out, "ok    config     scope: openid from-profile (from profile)\n");
    });
    await t.step(".env beats the profile", async () => {
      const out = await doctor([], { files: { ".env": { OAUTH_SCOPE: "openid from-dotenv" } } });
      assertStringIncludes(out, "scope: openid from-dotenv (from .env)\n");
      assertStringIncludes(out, `issuer: ${mock.issuer} (from profile)\n`);
    });
    await t.step("the environment beats .env", async () => {
      const out = await doctor([], {
        env: { OAUTH_SCOPE: "openid from-env" },
        files: { ".env": { OAUTH_SCOPE: "openid from-dotenv" } },
      });
      assertStringIncludes(out, "scope: openid from-env (from environment)\n");
    });
    await t.step("a flag beats the environment", async () => {
      const out = await doctor(["--scope", "openid from-flag"], { env: { OAUTH_SCOPE: "openid from-env" } });
      assertStringIncludes(out, "scope: openid from-flag (from flag)\n");
    });
    await t.step("a flag-only setting: the flag beats the profile, the profile beats the default", async () => {
      const withProfile = await runIn(home, ["login", "--profile", "work"]);
      assertEquals(withProfile.code, EXIT.ok, withProfile.stderr);
      assertEquals(mock.calls("authorize").at(-1)!.query.prompt, "consent");
      const withFlag = await runIn(home, ["login", "--profile", "work", "--prompt", "login"]);
      assertEquals(withFlag.code, EXIT.ok, withFlag.stderr);
      assertEquals(mock.calls("authorize").at(-1)!.query.prompt, "login");
      const withParam = await runIn(home, [
        "login",
        "--profile",
        "work",
        "--param",
        "audience=https://flag.example.com",
      ]);
      assertEquals(withParam.code, EXIT.ok, withParam.stderr);
      const query = mock.calls("authorize").at(-1)!.query;
      assertEquals([query.audience, query.acr_values], ["https://flag.example.com", "mfa"], "--param replaces one");
      const without = await runIn(home, ["login", "--issuer", mock.issuer, "--client-id", PUBLIC_CLIENT.id]);
      assertEquals(without.code, EXIT.ok, without.stderr);
      assertEquals(mock.calls("authorize").at(-1)!.query.prompt, undefined, "no profile, no prompt");
      assertEquals(mock.calls("authorize").at(-1)!.query.scope, "openid profile offline_access", "the default");
    });
    await Deno.remove(home, { recursive: true });
  });
});

Deno.test("a directory's .env chooses the profile; OAUTH_PROFILE and --profile override it", async () => {
  await withMock(async (mock) => {
    const { home } = await homeWith(twoAccounts(mock));
    const inAdminDir = { files: { ".env": { OAUTH_PROFILE: "admin" } } };
    const inUserDir = { files: { ".env": { OAUTH_PROFILE: "user" } } };
    for (const [dir, who] of [[inAdminDir, BOB], [inUserDir, ALICE]] as const) {
      const login = await runIn(home, ["login"], dir);
      assertEquals(login.code, EXIT.ok, login.stderr);
      assertStringIncludes(login.stderr, `Logged in as ${who.username}\n`);
    }
    const admin = await run(["token"], { home, ...inAdminDir });
    const user = await run(["token"], { home, ...inUserDir });
    assertEquals([tokenOwner(mock, admin), tokenOwner(mock, user)], [BOB.sub, ALICE.sub]);
    const env = await run(["token"], { home, ...inAdminDir, env: { OAUTH_PROFILE: "user" } });
    assertEquals(tokenOwner(mock, env), ALICE.sub, "the environment wins over .env");
    const flag = await run(["token", "--profile", "admin"], { home, ...inUserDir, env: { OAUTH_PROFILE: "user" } });
    assertEquals(tokenOwner(mock, flag), BOB.sub, "the flag wins over the environment");
    const fallback = await run(["token"], { home });
    assertEquals(tokenOwner(mock, fallback), ALICE.sub, "with nothing else, default_profile");
    const listed = await run(["profiles"], { home, ...inAdminDir });
    assertMatch(
      listed.stdout,
      /\n\* +admin +\S+ +bob@example\.com +valid[^\n]*\n +user +\S+ +alice@example\.com +valid/,
    );
    const listedHere = await run(["profiles"], { home });
    assertMatch(listedHere.stdout, /\n +admin [^\n]*\n\* +user /, "default_profile is the one used here");
    assertEquals(mock.calls("token").length, 2, "two logins, and every token came from the cache");
    await Deno.remove(home, { recursive: true });
  }, { users: [ALICE, BOB] });
});

Deno.test("two accounts at one issuer and client stay apart through login, token, refresh and logout", async () => {
  let clock = Date.now();
  await withMock(async (mock) => {
    const { home } = await homeWith(twoAccounts(mock));
    const options = { now: () => clock };
    for (const [profile, who] of [["admin", BOB], ["user", ALICE]] as const) {
      const login = await runIn(home, ["login", "--profile", profile], options);
      assertEquals(login.code, EXIT.ok, login.stderr);
      assertStringIncludes(login.stderr, `Logged in as ${who.username}\n`);
    }
    assertEquals(mock.calls("authorize").map((r) => r.query.login_hint), [BOB.username, ALICE.username]);
    const files = [...Deno.readDirSync(`${home}/cache`)].map((e) => e.name).filter((n) => n.endsWith(".json"));
    assertEquals(files.length, 2, "one cache entry per profile");

    const all = await run(["whoami", "--all"], { home, ...options });
    assertEquals(all.code, EXIT.ok, all.stderr);
    assertMatch(all.stdout, /^PROFILE +ISSUER +CLIENT +USER +TOKEN +SECRETS\n/);
    assertMatch(
      all.stdout,
      new RegExp(`\nadmin +${mock.issuer} +cli-public +bob@example\\.com +valid, expires in 60 minutes`),
    );
    assertMatch(all.stdout, new RegExp(`\nuser +${mock.issuer} +cli-public +alice@example\\.com +valid`));
    const allJson = JSON.parse((await run(["whoami", "--all", "--json"], { home, ...options })).stdout);
    assertEquals(
      allJson.map((e: { profile: string; user: string; state: string }) => [e.profile, e.user, e.state]).sort(),
      [["admin", BOB.username, "valid"], ["user", ALICE.username, "valid"]],
    );

    clock += 2 * 3600_000; // both access tokens have expired
    const admin = await run(["token", "--profile", "admin"], { home, ...options });
    assertEquals(admin.code, EXIT.ok, admin.stderr);
    const refresh = mock.calls("token").filter((r) => r.form.grant_type === "refresh_token");
    assertEquals(refresh.length, 1);
    assertEquals(mock.refreshTokens.get(refresh[0].form.refresh_token)?.sub, BOB.sub, "admin's refresh token");
    assertEquals(tokenOwner(mock, admin), BOB.sub);
    const whoUser = await run(["whoami", "--profile", "user"], { home, ...options });
    assertStringIncludes(whoUser.stdout, `as ${ALICE.username}\n`);
    assertStringIncludes(whoUser.stdout, "expired", "the other account was not refreshed");

    const logout = await run(["logout", "--profile", "admin"], { home, ...options });
    assertEquals(logout.code, EXIT.ok, logout.stderr);
    assert(
      mock.revoked.length > 0 && mock.revoked.every((t) => (mock.refreshTokens.get(t)?.sub ?? BOB.sub) === BOB.sub),
    );
    assertEquals((await run(["whoami", "--profile", "admin"], { home, ...options })).code, EXIT.loginRequired);
    const user = await run(["token", "--profile", "user"], { home, ...options });
    assertEquals(user.code, EXIT.ok, user.stderr);
    assertEquals(tokenOwner(mock, user), ALICE.sub, "user's login survived admin's logout (and refreshed)");
    await Deno.remove(home, { recursive: true });
  }, { users: [ALICE, BOB] });
});

Deno.test("login --save-profile writes the working settings, keeps other tables and comments, never a secret", async (t) => {
  await withMock(async (mock) => {
    const original = `# my logins
default_profile = "home"   # the usual one

[home]
# personal account
issuer = "https://accounts.example.org"
client_id = "personal"

# the work one, replaced below
[work]
issuer = "https://old.example.com"
client_id = "old"
# a comment inside work

# about the next table
[other]
client_id = "x" # trailing comment
issuer = "https://other.example.com"
`;
    const { home, path } = await homeWith(original);
    await t.step("a confidential client: the secret stays in the environment", async () => {
      const result = await runIn(home, [
        "login",
        "--issuer",
        mock.issuer,
        "--client-id",
        CONFIDENTIAL_CLIENT.id,
        "--scope",
        "openid offline_access",
        "--param",
        "audience=https://api.example.com",
        "--save-profile",
        "work",
      ], { env: { OAUTH_CLIENT_SECRET: CONFIDENTIAL_CLIENT.secret! } });
      assertEquals(result.code, EXIT.ok, result.stderr);
      // The file had another [work]: the person is told it was replaced.
      assertStringIncludes(
        result.stderr,
        `Saved the profile "work" in ${path}, replacing the settings it had; use it with --profile work\n`,
      );
      assertNoLeaks(result, secretsOf(mock));
      const text = await Deno.readTextFile(path);
      assert(!text.includes(CONFIDENTIAL_CLIENT.secret!), "no client secret in the file");
      assertNotMatch(text, /secret/);
      assertEquals(
        text,
        `# my logins
default_profile = "home"   # the usual one

[home]
# personal account
issuer = "https://accounts.example.org"
client_id = "personal"

# the work one, replaced below
[work]
issuer = "${mock.issuer}"
client_id = "${CONFIDENTIAL_CLIENT.id}"
scope = "openid offline_access"

[work.params]
audience = "https://api.example.com"

# about the next table
[other]
client_id = "x" # trailing comment
issuer = "https://other.example.com"
`,
      );
      assertEquals((await Deno.stat(path)).mode! & 0o777, 0o600);
    });
    await t.step("the saved profile finds the login's cache entry", async () => {
      const token = await run(["token", "--profile", "work"], {
        home,
        env: { OAUTH_CLIENT_SECRET: CONFIDENTIAL_CLIENT.secret! },
      });
      assertEquals(token.code, EXIT.ok, token.stderr);
      assertEquals(mock.calls("token").length, 1, "no second login, no refresh");
      const profiles = await run(["profiles"], { home });
      assertEquals(profiles.code, EXIT.ok, profiles.stderr);
      assertMatch(
        profiles.stdout,
        /^ +PROFILE +ISSUER +USER +TOKEN\n\* +home +https:\/\/accounts\.example\.org +- +not logged in\n/,
      );
      assertMatch(
        profiles.stdout,
        new RegExp(`\n +work +${mock.issuer} +alice@example\\.com +valid, expires in 60 minutes\n`),
      );
      assertMatch(profiles.stdout, /\n +other +https:\/\/other\.example\.com +- +not logged in\n$/);
      const json = JSON.parse((await run(["profiles", "--json"], { home })).stdout);
      assertEquals(json.config_file, path);
      assertEquals(json.active, "home");
      assertEquals(
        json.profiles.map((p: { name: string; user: string | null; state: string }) => [p.name, p.user, p.state]),
        [["home", null, "logged_out"], ["work", ALICE.username, "valid"], ["other", null, "logged_out"]],
      );
    });
    await Deno.remove(home, { recursive: true });
  });
});

Deno.test("login --save-profile creates the config file owner-only in an owner-only directory", async () => {
  await withMock(async (mock) => {
    const { home, path } = await homeWith();
    const result = await runIn(home, [
      "login",
      "--issuer",
      mock.issuer,
      "--client-id",
      PUBLIC_CLIENT.id,
      "--login-hint",
      "alice@example.com",
      "--save-profile",
      "dev",
    ]);
    assertEquals(result.code, EXIT.ok, result.stderr);
    assertEquals(
      await Deno.readTextFile(path),
      `[dev]\nissuer = "${mock.issuer}"\nclient_id = "${PUBLIC_CLIENT.id}"\nlogin_hint = "alice@example.com"\n`,
    );
    assertEquals((await Deno.stat(path)).mode! & 0o777, 0o600);
    assertEquals((await Deno.stat(`${home}/config/oauth-login`)).mode! & 0o777, 0o700);
    assertEquals(
      [...Deno.readDirSync(`${home}/config/oauth-login`)].map((e) => e.name),
      ["config.toml"],
      "no temporary file left",
    );
    await Deno.remove(home, { recursive: true });
  });
});

Deno.test("an unknown profile is a usage error that lists the known ones, before any request", async () => {
  await withMock(async (mock) => {
    const { home, path } = await homeWith(twoAccounts(mock));
    const result = await run(["token", "--profile", "prod"], { home, fetch: mock.handler as typeof fetch });
    assertEquals(result.code, EXIT.usage);
    assertEquals(
      result.stderr,
      `error: The profile "prod" (from --profile) is not in "${path}"\nhint: known profiles: admin, user\n`,
    );
    assertEquals(result.stdout, "");
    assertEquals(mock.requests.length, 0);
    // `profiles` takes the same rule: it names the profile that is not there instead of listing the others.
    const listing = await run(["profiles", "--profile", "prod"], { home });
    assertEquals(listing.code, EXIT.usage);
    assertEquals(listing.stderr, result.stderr);
    assertEquals(listing.stdout, "");
    const none = await run(["login", "--profile", "prod"], { home: (await homeWith()).home });
    assertEquals(none.code, EXIT.usage);
    assertStringIncludes(none.stderr, 'hint: there are no profiles yet: save one with "oauth-login login');
    await cleanUp(none);
    await Deno.remove(home, { recursive: true });
  });
});

Deno.test("a malformed config file is an error naming its line; runs that need no profile still work", async (t) => {
  await withMock(async (mock) => {
    const { home, path } = await homeWith(`[work]\nissuer = "${mock.issuer}"\nclient_id = "unterminated\n`);
    await t.step("a run with a profile: exit 2 and the line", async () => {
      const result = await run(["token", "--profile", "work"], { home });
      assertEquals(result.code, EXIT.usage);
      assertEquals(
        result.stderr,
        `error: The config file "${path}" is not valid TOML: line 3: control characters are not allowed in strings\n` +
          "hint: fix that line; runs that use no profile do not read the file\n",
      );
    });
    await t.step("a run with no profile never reads it", async () => {
      const login = await runIn(home, ["login", "--issuer", mock.issuer, "--client-id", PUBLIC_CLIENT.id]);
      assertEquals(login.code, EXIT.ok, login.stderr);
      const token = await run(["token"], {
        home,
        env: { OAUTH_ISSUER: mock.issuer, OAUTH_CLIENT_ID: PUBLIC_CLIENT.id },
      });
      assertEquals(token.code, EXIT.ok, token.stderr);
      assertEquals(token.stderr, "");
      const all = await run(["whoami", "--all"], { home });
      assertEquals(all.code, EXIT.ok, all.stderr);
      const logout = await run(["logout", "--all"], { home });
      assertEquals(logout.code, EXIT.ok, logout.stderr);
    });
    await t.step("doctor reports it and carries on", async () => {
      const doctor = await run(["doctor", "--profile", "work", "--issuer", mock.issuer, "--client-id", "x"], { home });
      assertEquals(doctor.code, EXIT.failure);
      assertStringIncludes(doctor.stdout, `fail  config     The config file "${path}" is not valid TOML: line 3:`);
      assertStringIncludes(doctor.stdout, "answered and names itself as the configured issuer");
    });
    await Deno.remove(home, { recursive: true });
  });
});

Deno.test("a config file holding a client secret is refused; an unknown key is a warning", async (t) => {
  await withMock(async (mock) => {
    await t.step("client_secret", async () => {
      const { home, path } = await homeWith(
        `[work]\nissuer = "${mock.issuer}"\nclient_id = "x"\nclient_secret = "hunter2-hunter2"\n`,
      );
      const result = await run(["login", "--profile", "work"], { home, fetch: mock.handler as typeof fetch });
      assertEquals(result.code, EXIT.usage);
      assertEquals(
        result.stderr,
        `error: The config file holds a secret: "client_secret" in the profile "work" of ${path}\n` +
          "hint: remove it from the file and set OAUTH_CLIENT_SECRET in the environment or in .env; secrets never go in the config file\n",
      );
      assert(!result.stderr.includes("hunter2"));
      assertEquals(mock.requests.length, 0);
      await Deno.remove(home, { recursive: true });
    });
    await t.step("an unknown key", async () => {
      const { home, path } = await homeWith(
        `[work]\nissuer = "${mock.issuer}"\nclient_id = "${PUBLIC_CLIENT.id}"\nscopes = "typo"\n`,
      );
      const result = await runIn(home, ["login", "--profile", "work"]);
      assertEquals(result.code, EXIT.ok, result.stderr);
      assertStringIncludes(
        result.stderr,
        `warning: Unknown setting "scopes" in the profile "work" of ${path}; it is ignored\n`,
      );
      await Deno.remove(home, { recursive: true });
    });
  });
});

Deno.test("default_profile applies only when nothing else sets the issuer", async () => {
  await withMock(async (mock) => {
    const { home } = await homeWith(twoAccounts(mock));
    const login = await runIn(home, ["login"]);
    assertEquals(login.code, EXIT.ok, login.stderr);
    assertEquals(mock.calls("authorize")[0].query.login_hint, ALICE.username, "the default profile, user");
    const other = await runIn(home, ["login", "--issuer", mock.issuer, "--client-id", CONFIDENTIAL_CLIENT.id], {
      env: { OAUTH_CLIENT_SECRET: CONFIDENTIAL_CLIENT.secret! },
    });
    assertEquals(other.code, EXIT.ok, other.stderr);
    assertEquals(mock.calls("authorize")[1].query.login_hint, undefined, "an explicit issuer: no profile");
    await Deno.remove(home, { recursive: true });
  }, { users: [ALICE, BOB] });
});

Deno.test("cacheKey: without a profile the key is unchanged; each profile has its own", () => {
  const base: Pick<Config, "issuer" | "clientId" | "scope" | "params"> = {
    issuer: "https://id.example.com/",
    clientId: "cli",
    scope: "openid",
    params: [],
  };
  const keys = [cacheKey(base), cacheKey({ ...base, profile: undefined }), cacheKey({ ...base, profile: "a" })];
  assertEquals(keys[0], keys[1]);
  assert(keys[0] !== keys[2]);
  assert(cacheKey({ ...base, profile: "a" }) !== cacheKey({ ...base, profile: "b" }));
});

Deno.test("replaceProfileText edits only the profile's table", async (t) => {
  const table = '[work]\nissuer = "https://new"\n';
  await t.step("appends to a file without the table", () => {
    assertEquals(replaceProfileText("# hi\n[a]\nx = 1\n", "work", table), `# hi\n[a]\nx = 1\n\n${table}`);
    assertEquals(replaceProfileText("", "work", table), table);
  });
  await t.step("replaces the table and its sub-tables wherever they are, keeping CRLF", () => {
    const text = '[work]\r\nissuer = "https://old"\r\n\r\n[a]\r\nx = 1\r\n\r\n[work.params]\r\naudience = "y"\r\n';
    assertEquals(
      replaceProfileText(text, "work", table),
      '[work]\r\nissuer = "https://new"\r\n\r\n[a]\r\nx = 1\r\n\r\n',
    );
  });
  await t.step("a quoted header names the same table", () => {
    assertEquals(
      replaceProfileText('["work"]\nissuer = "https://old"\n[b]\n', "work", table),
      '[work]\nissuer = "https://new"\n\n[b]\n',
    );
  });
});

Deno.test("configPath: OAUTH_LOGIN_CONFIG, else XDG_CONFIG_HOME, else the platform's config directory", () => {
  const env = (vars: Record<string, string>) => (name: string) => vars[name];
  const home = { HOME: "/home/a", APPDATA: "C:\\Users\\a\\AppData\\Roaming" };
  assertEquals(configPath(env({ ...home, OAUTH_LOGIN_CONFIG: "/etc/x.toml" }), "linux"), "/etc/x.toml");
  assertEquals(configPath(env({ ...home, XDG_CONFIG_HOME: "/x" }), "linux"), "/x/oauth-login/config.toml");
  assertEquals(configPath(env(home), "linux"), "/home/a/.config/oauth-login/config.toml");
  assertEquals(configPath(env(home), "darwin"), "/home/a/Library/Application Support/oauth-login/config.toml");
  assertEquals(configPath(env(home), "windows"), "C:\\Users\\a\\AppData\\Roaming\\oauth-login\\config.toml");
  assertEquals(configPath(env({}), "linux"), undefined);
});

Deno.test("profiles with no config file says so on stderr and exits 0; --json gives an empty list", async () => {
  const { home, path } = await homeWith();
  const text = await run(["profiles"], { home });
  assertEquals([text.code, text.stdout], [EXIT.ok, ""]);
  assertEquals(
    text.stderr,
    `No profiles in ${path}; save one with "oauth-login login --issuer URL --client-id ID --save-profile NAME"\n`,
  );
  const json = await run(["profiles", "--json"], { home });
  assertEquals(JSON.parse(json.stdout), { config_file: path, active: null, profiles: [] });
  await Deno.remove(home, { recursive: true });
});

Deno.test("a profile's switch (dpop = true) turns DPoP on, as OAUTH_DPOP=1 would; false leaves it off", () => {
  const cli = { command: "token" as const, named: true, flags: {} };
  const profile = (dpop: boolean) => ({
    name: "work",
    path: "/home/alice/.config/oauth-login/config.toml",
    chosenBy: "--profile",
    flags: { issuer: "https://idp.example", "client-id": "cli", dpop },
  });
  assertEquals(testing.resolveConfig(cli, () => undefined, {}, profile(true)).dpop, true);
  assertEquals(testing.resolveConfig(cli, () => undefined, {}, profile(false)).dpop, false);
  // The environment still wins over the profile.
  const env = (name: string) => name === "OAUTH_DPOP" ? "0" : undefined;
  assertEquals(testing.resolveConfig(cli, env, {}, profile(true)).dpop, false);
});

// ── Every setting a profile holds is used (red team, finding 3) ────────────────────────────────

/**
 * A value for each flag a profile may hold, and what else the base settings need for it to apply. A
 * flag a profile may hold that is missing here fails the test below: add its row.
 */
const PROFILE_SAMPLES: Record<string, { value: string | string[] | boolean; base?: Record<string, string> }> = {
  issuer: { value: "https://other.example.com" },
  prompt: { value: "consent" },
  param: { value: ["acr_values=urn:mfa"] },
  "min-ttl": { value: "120" },
  flow: { value: "device" },
  "client-id": { value: "other-client" },
  "client-auth": { value: "none" },
  scope: { value: "openid email" },
  "redirect-uri": { value: "http://127.0.0.1:8765/cb" },
  port: { value: "8765" },
  timeout: { value: "60" },
  "no-browser": { value: true },
  "authorization-endpoint": { value: "https://idp.example.com/auth" },
  "token-endpoint": { value: "https://idp.example.com/tok" },
  "device-authorization-endpoint": { value: "https://idp.example.com/dev" },
  "revocation-endpoint": { value: "https://idp.example.com/rev" },
  "introspection-endpoint": { value: "https://idp.example.com/int" },
  "userinfo-endpoint": { value: "https://idp.example.com/me" },
  "user-claim": { value: "email" },
  provider: { value: "keycloak" },
  tenant: { value: "contoso.onmicrosoft.com", base: { provider: "entra" } },
  "login-hint": { value: "alice@example.com" },
  "no-par": { value: true },
  dpop: { value: true },
  "client-key": { value: "/home/alice/keys/client.pem" },
  "assertion-audience": { value: "token-endpoint", base: { "client-key": "/home/alice/keys/client.pem" } },
  resource: { value: ["https://api.example.com/"] },
  audience: { value: "https://api.example.com" },
  "token-storage": { value: "file" },
  "acr-values": { value: "urn:mfa" },
  "max-age": { value: "300" },
  grant: { value: "client_credentials" },
  "subject-token-from": { value: "env:IDP_TOKEN", base: { grant: "token-exchange" } },
  "subject-token-type": { value: "urn:ietf:params:oauth:token-type:jwt", base: { grant: "token-exchange" } },
  "requested-token-type": { value: "urn:ietf:params:oauth:token-type:access_token", base: { grant: "token-exchange" } },
  "subject-audience": {
    value: "https://idp.example.com",
    base: { grant: "token-exchange", "subject-token-from": "github-actions" },
  },
  "actor-token-from": { value: "file:/home/alice/actor.jwt", base: { grant: "token-exchange" } },
  "actor-token-type": { value: "urn:ietf:params:oauth:token-type:jwt", base: { grant: "token-exchange" } },
};

Deno.test("every setting a profile can hold is used as its flag would be (resource, audience, assertion_audience...)", async (t) => {
  const names = testing.profileFlagNames();
  assertEquals(names.filter((name) => !(name in PROFILE_SAMPLES)), [], "a profile setting without a sample row");
  // What the two runs share; `sources`, `trust` and `providerReason` say where a value came from, which differs.
  const comparable = (config: Config) => {
    const { sources: _s, trust: _t, providerReason: _p, ...rest } = config;
    return rest;
  };
  for (const name of names) {
    await t.step(name, () => {
      const { value, base = {} } = PROFILE_SAMPLES[name];
      const profileOf = (flags: Record<string, unknown>) =>
        ({
          name: "p",
          path: "/home/alice/.config/oauth-login/config.toml",
          chosenBy: "--profile",
          flags: { issuer: "https://idp.example.com", "client-id": "cli", ...base, ...flags },
        }) as Parameters<typeof testing.resolveConfig>[3];
      for (const command of ["login", "fetch"] as const) {
        const cli = (flags: Record<string, unknown>) =>
          ({
            command,
            named: true,
            flags,
            target: command === "fetch" ? "https://api.example.com/me" : undefined,
          }) as Parameters<typeof testing.resolveConfig>[0];
        const outcome = (make: () => Config) => {
          try {
            return comparable(make());
          } catch (error) {
            return `${(error as Error).message}`;
          }
        };
        const asFlag = outcome(() => testing.resolveConfig(cli({ [name]: value }), () => undefined, {}, profileOf({})));
        const inProfile = outcome(() =>
          testing.resolveConfig(cli({}), () => undefined, {}, profileOf({ [name]: value }))
        );
        assertEquals(inProfile, asFlag, `${command}: the profile's ${name} is not used as --${name} is`);
      }
    });
  }
});

Deno.test("login --resource R --save-profile p: whoami, login and fetch --profile p use R", async () => {
  const seen: string[] = [];
  const other = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (request) => {
    seen.push(request.headers.get("authorization") ?? "");
    return new Response("ok");
  });
  try {
    await withMock(async (mock) => {
      const api = `http://127.0.0.1:${mock.port}/`;
      const login = await run(
        ["login", "--issuer", mock.issuer, "--client-id", PUBLIC_CLIENT.id, "--resource", api, "--save-profile", "p"],
        { browser: (url) => scriptedBrowser(url) },
      );
      try {
        assertEquals(login.code, EXIT.ok, login.stderr);
        // The login just cached is the profile's: whoami finds it.
        const whoami = await run(["whoami", "--profile", "p"], { home: login.home });
        assertEquals(whoami.code, EXIT.ok, `whoami --profile p after login --save-profile p: ${whoami.stderr}`);
        // "login --profile p" asks for the profile's resource, and fetch keeps the token to it.
        const again = await runIn(login.home, ["login", "--profile", "p"]);
        assertEquals(again.code, EXIT.ok, again.stderr);
        // Each login's requests to the authorization endpoint (a preflight, then the browser's) carry it.
        const asked = mock.requests.filter((r) => r.path.endsWith("/authorize")).map((r) => r.query.resource);
        assertEquals(asked, [api, api, api, api], "the profile's resource goes with its authorization request");
        const url = `http://127.0.0.1:${other.addr.port}/elsewhere`;
        const fetched = await run(["fetch", "--profile", "p", url], { home: login.home });
        assertEquals(seen, [], `the token went to another origin:\n${fetched.stderr}`);
        assertEquals(fetched.code, EXIT.usage, fetched.stderr);
        assertEquals(
          fetched.stderr,
          `error: The access token is for "${api.slice(0, -1)}", not for "http://127.0.0.1:${other.addr.port}"\n` +
            `hint: to call http://127.0.0.1:${other.addr.port}, log in for it: add --resource http://127.0.0.1:${other.addr.port} to the login and to this command\n`,
        );
      } finally {
        await cleanUp(login);
      }
    });
  } finally {
    await other.shutdown();
  }
});

// ── A .env's profile is never mixed into the person's own server (red team, finding 9) ──────────

Deno.test("a .env's OAUTH_PROFILE is ignored when the person's flags or environment name the server", async (t) => {
  await withMock(async (real) => {
    await withMock(async (github) => {
      const { home } = await homeWith(`[github]\nprovider = "github"\nclient_id = "Iv1.personal"\n`);
      // kubectl's exec block (or a script) sets the issuer, client and secret; the cloned project's .env names a profile.
      const own = {
        OAUTH_ISSUER: real.issuer,
        OAUTH_CLIENT_ID: CONFIDENTIAL_CLIENT.id,
        OAUTH_CLIENT_SECRET: CONFIDENTIAL_CLIENT.secret!,
      };
      const inRepo = { cwd: "/home/alice/repo", files: { ".env": { OAUTH_PROFILE: "github" } } };
      const warning = "warning: Ignoring OAUTH_PROFILE in .env: a project file cannot choose the profile when " +
        "OAUTH_ISSUER in the environment names the server\n";
      await t.step("doctor: the environment's issuer and client, no preset, and the warning", async () => {
        const doctor = await run(["doctor"], { home, env: own, presetBase: github.issuer, ...inRepo });
        assertNotMatch(doctor.stdout, /profile: github|provider preset: github|token-endpoint:/);
        assertStringIncludes(doctor.stdout, `ok    config     issuer: ${real.issuer} (from environment)\n`);
        assertStringIncludes(doctor.stdout, `warn  config     ${warning.slice("warning: ".length)}`);
      });
      await t.step("login: the environment's server alone, and the warning", async () => {
        const login = await runIn(home, ["login"], { env: own, presetBase: github.issuer, ...inRepo });
        assertEquals(login.code, EXIT.ok, login.stderr);
        assertEquals(login.stderr.split("\n")[0] + "\n", warning);
        assertEquals(github.requests, [], "nothing went to the preset's server");
        assertEquals(real.calls("token").length, 1);
      });
      await t.step("with nothing of the person's naming a server, the .env still chooses the profile", async () => {
        const doctor = await run(["doctor"], { home, presetBase: github.issuer, ...inRepo });
        assertStringIncludes(doctor.stdout, "ok    config     profile: github (from OAUTH_PROFILE in .env)");
      });
      await Deno.remove(home, { recursive: true });
    }, { clients: [{ id: "Iv1.personal", auth: "none", redirectUris: ["http://127.0.0.1/callback"] }] });
  }, { clients: [CONFIDENTIAL_CLIENT] });
});

// ── A config file others can change decides nothing (red team, finding 5) ──────────────────────

Deno.test("a config file, or its folder, that others can change or own is refused, as the cache's files are", async (t) => {
  const profile = 'default_profile = "work"\n[work]\nissuer = "https://idp.example.com"\nclient_id = "c"\n';
  // The environment's secret would go to the issuer the file names.
  const env = { OAUTH_CLIENT_SECRET: "corp-secret" };
  const offline = () => Promise.reject(new Error("no network in this case"));
  const refused = async (home: string, error: string, hint: string) => {
    const login = await run(["login"], { home, env, fetch: offline });
    assertEquals([login.code, login.stderr], [EXIT.usage, `error: ${error}\nhint: ${hint}\n`]);
    const doctor = await run(["doctor"], { home, env, fetch: offline });
    assertStringIncludes(doctor.stdout, `fail  config     ${error} (${hint})\n`);
    assertNotMatch(doctor.stdout, /where you sign in and where credentials go: set by issuer in the profile/);
    const listed = await run(["profiles"], { home, env });
    assertEquals([listed.code, listed.stderr], [EXIT.usage, `error: ${error}\nhint: ${hint}\n`]);
  };
  for (const mode of [0o666, 0o664, 0o646]) {
    await t.step(`the file is ${mode.toString(8)}`, async () => {
      const { home, path } = await homeWith(profile);
      await Deno.chmod(path, mode);
      await refused(
        home,
        `The config file "${path}" can be changed by other users`,
        `make it private with: chmod 600 ${path}`,
      );
      await Deno.remove(home, { recursive: true });
    });
  }
  await t.step("its folder is 0777", async () => {
    const { home, path } = await homeWith(profile);
    const dir = path.slice(0, path.lastIndexOf("/"));
    await Deno.chmod(dir, 0o777);
    await refused(
      home,
      `The config file's folder "${dir}" can be changed by other users`,
      `make it private with: chmod 700 ${dir}; or set OAUTH_LOGIN_CONFIG to a file of your own`,
    );
    await Deno.remove(home, { recursive: true });
  });
  await t.step("a link (a dotfiles manager's) to a file in a folder others can change", async () => {
    const { home, path } = await homeWith(profile);
    const shared = await Deno.makeTempDir({ prefix: "oauth-login-shared-" });
    await Deno.chmod(shared, 0o777);
    await Deno.rename(path, `${shared}/config.toml`);
    await Deno.symlink(`${shared}/config.toml`, path);
    await refused(
      home,
      `The config file's folder "${shared}" can be changed by other users`,
      `make it private with: chmod 700 ${shared}; or set OAUTH_LOGIN_CONFIG to a file of your own`,
    );
    await Deno.chmod(shared, 0o700); // a link to a private file in a private folder is used
    const login = await run(["whoami"], { home, env });
    assertEquals([login.code, login.stderr], [
      EXIT.loginRequired,
      'error: Not logged in for https://idp.example.com\nhint: run "oauth-login login --profile work"\n',
    ]);
    await Deno.remove(shared, { recursive: true });
    await Deno.remove(home, { recursive: true });
  });
  await t.step({
    name: "the file belongs to another user (run as root)",
    ignore: Deno.build.os !== "linux" || !asRootHere(),
    fn: async () => {
      const { home, path } = await homeWith(profile);
      await Deno.chown(path, 65534, 65534);
      await refused(
        home,
        `The config file "${path}" belongs to another user`,
        "set OAUTH_LOGIN_CONFIG to a file of your own",
      );
      await Deno.remove(home, { recursive: true });
    },
  });
});

/** Whether the tests run as root (asked of a file's owner: the test task grants no sys permission). */
function asRootHere(): boolean {
  const probe = Deno.makeTempFileSync({ prefix: "oauth-login-uid-" });
  try {
    return Deno.statSync(probe).uid === 0;
  } finally {
    Deno.removeSync(probe);
  }
}
