/**
 * Mutation check of the suite's guards (issue 10): breaks one security property of login.ts at a
 * time, by a textual replacement in a scratch copy of the repository, runs the test files that
 * should notice, and prints one line per mutant: `killed` (the suite went red) or `SURVIVED`.
 *
 *     deno task mutants            # every mutant
 *     deno task mutants nonce bind # only those whose name contains one of the words
 *
 * Not part of `deno task test`. Exits 1 when a mutant survives, when a pattern no longer matches
 * login.ts ("pattern not found": login.ts changed, so update the pattern below), when a mutant
 * does not load, or when the unmutated copy is not green to begin with.
 *
 * Each pattern replaces its FIRST match only: where the same statement is in several places (the
 * refresh's lock and the others), a lookbehind on the neighbouring line picks the live one. A mutant
 * that hits the wrong copy survives.
 *
 * @module
 */

/** One breakage: a short name, the replacements that make it, and the test files that must go red. */
interface Mutant {
  name: string;
  /** Applied in order to login.ts; each pattern must match at least once. */
  edits: [RegExp, string][];
  tests: string[];
}

const GUARD = "tests/guard_test.ts";
const LOGIN = "login_test.ts";
const HOSTILE = "tests/hostile_test.ts";
const DPOP = "tests/dpop_test.ts";
const PROFILES = "tests/profiles_test.ts";
const LIFETIMES = "tests/lifetimes_test.ts";
const SENDER = "tests/sender_test.ts";
const ENTRIES = "tests/entries_test.ts";
const TRUST = "tests/trust_test.ts";
const CALLBACK = "tests/callback_test.ts";
const GUARDS = "tests/guards_test.ts";
const PROVIDERS = "tests/providers_test.ts";
const FIRSTHOUR = "tests/firsthour_test.ts";
const RESOURCE = "tests/resource_test.ts";
const KEYCHAIN = "tests/keychain_test.ts";
const MACHINE = "tests/machine_test.ts";
const ANSWERS = "tests/server_answers_test.ts";

const MUTANTS: Mutant[] = [
  // The rows of issue 10's table.
  {
    name: "state made constant",
    edits: [[/oauth\.generateRandomState\(\)/, '"constant-state-0123456789abcdef"']],
    tests: [GUARD],
  },
  {
    name: "PKCE code_verifier made constant",
    edits: [[/oauth\.generateRandomCodeVerifier\(\)/, '"constant-code-verifier-0123456789abcdefghijklmnop"']],
    tests: [GUARD],
  },
  {
    name: "callback server bound to 0.0.0.0 (and :: for ::1)",
    edits: [[
      /Deno\.listen\(\{ hostname, port, transport: "tcp" \}\)/,
      'Deno.listen({ hostname: hostname === "::1" ? "::" : "0.0.0.0", port, transport: "tcp" })',
    ]],
    tests: [GUARD],
  },
  {
    name: "a refreshed ID token may name another sub",
    edits: [[/claims\.sub !== entry\.subject/, "false"]],
    tests: [GUARD],
  },
  {
    name: "the name from the ID token dropped",
    edits: [[/if \(claims && fromClaims\(claims\)\) return [^\n]*\n/, ""]],
    tests: [GUARD],
  },
  {
    name: "the name from UserInfo dropped",
    edits: [[/const user = fromClaims\(info\) \?\? info\.sub;/, "const user = info.sub;"]],
    tests: [GUARD],
  },
  {
    name: "the browser timeout never fires",
    // The browser wait's bound (listen -> wait()): about 24.8 days instead of --timeout.
    edits: [[/ms: config\.timeoutMs,/, "ms: 2147483647,"]],
    tests: [GUARD, LOGIN],
  },
  // The other security properties.
  {
    name: "nonce made constant",
    edits: [[/oauth\.generateRandomNonce\(\)/, '"constant-nonce-0123456789abcdef"']],
    tests: [GUARD],
  },
  {
    name: "PKCE plain instead of S256",
    edits: [
      [/await oauth\.calculatePKCECodeChallenge\(request\.verifier\)/, "request.verifier"],
      [/"code_challenge_method", "S256"/, '"code_challenge_method", "plain"'],
    ],
    tests: [LOGIN],
  },
  {
    name: "RFC 9207 iss not checked",
    edits: [[
      /validateAuthResponse\(as, client, callback, request\.state\)/,
      "validateAuthResponse({ ...as, authorization_response_iss_parameter_supported: false }, client, " +
      'new URLSearchParams([...callback].filter(([k]) => k !== "iss")), request.state)',
    ]],
    tests: [LOGIN, HOSTILE],
  },
  {
    name: "the callback server does not check state",
    edits: [[/!timingSafeEqual\(states\[0\], options\.state\)/, "false"]],
    tests: [LOGIN, HOSTILE],
  },
  {
    name: "state not single-use (a second callback is handled)",
    edits: [[/if \(consumed\) \{/, "if (false) {"]],
    tests: [HOSTILE],
  },
  {
    name: "Host header not checked (DNS rebinding)",
    edits: [[/!options\.hosts\.includes\(host\.toLowerCase\(\)\)/, "false"]],
    tests: [LOGIN, HOSTILE],
  },
  {
    name: "secrets not redacted in the trace",
    edits: [[/return text\.length <= 8 \? "\[redacted\]" : [^;\n]+;/, "return text;"]],
    tests: [LOGIN],
  },
  {
    name: "cache files written 0644",
    // writePrivateFile, the one writer of private files (the token cache's entries and the profiles).
    edits: [[/(?<=const file = await Deno\.open\(temporary, \{ write: true, createNew: true, mode: )0o600/, "0o644"]],
    tests: [LOGIN, HOSTILE],
  },
  {
    name: "cache directory created 0755",
    // The cache's ensureDir, not writePrivateFile's mkdir of a file's folder (which ensureDir runs before).
    edits: [[
      /Deno\.mkdir\(dir, \{ recursive: true, mode: 0o700 \}\)/,
      "Deno.mkdir(dir, { recursive: true, mode: 0o755 })",
    ]],
    tests: [LOGIN],
  },
  {
    name: "a cache file others can read is accepted",
    // fileProblem's mode check, not readClientKey's, which comes first in login.ts.
    edits: [[/file\.mode === null \|\| \(file\.mode & 0o077\) === 0/, "true"]],
    tests: [LOGIN],
  },
  {
    name: "Ctrl-C ignored once a wait has begun",
    // wait()'s listener: an abort after the wait began no longer ends it (one already aborted still does).
    edits: [[/deps\.signal\.addEventListener\("abort", onAbort, \{ once: true \}\);/, "void onAbort;"]],
    tests: [LOGIN],
  },
  {
    name: "no lock around the refresh",
    // The refresh's lock (in the cached-token path), not the login's or logout's, which come first in login.ts.
    edits: [[
      /(?<=let lock: \{ release\(\): void \};\s+try \{\s+)lock = await lockEntry\(name, deps\);/,
      "lock = { release() {} };",
    ]],
    tests: [LOGIN, LIFETIMES],
  },
  // Properties added since issue 10.
  {
    name: "a --client-key file others can read is accepted",
    edits: [[/(?<=Deno\.build\.os !== "windows" && info\.mode !== null && )\(info\.mode & 0o077\) !== 0/, "false"]],
    tests: [DPOP],
  },
  {
    name: "--save-profile writes the client secret",
    edits: [[
      /if \(RUN_FLAGS\.has\(flag\)\) continue;/,
      'if (RUN_FLAGS.has(flag) && flag !== "client-secret") continue;',
    ]],
    tests: [PROFILES],
  },
  {
    name: "the preflight ignores the proxy route (a loopback issuer's goes to HTTP_PROXY)",
    // The preflight goes through the one sender (issue 19 §2): the sender's client, dropped.
    edits: [[/(?<=redirect: "manual",\s+signal: [^\n]+\s+)\.\.\.\(client \? \{ client \} : \{\}\),/, ""]],
    tests: [GUARD],
  },
  // ── Issue 19 §2: one way to reach a server (tests/sender_test.ts) ──────────────────────────────
  {
    name: "fetch sends through the proxy to loopback (its API request ignores the route)",
    // Both of sendWithToken's calls of the sender (Bearer, and DPoP's through oauth4webapi) see no proxy
    // variables, so name no client: Deno's own fetch then sends a loopback API's request to HTTP_PROXY.
    edits: [
      [
        /return await send\(deps, url, \{ method: request\.method/,
        "return await send({ ...deps, env: () => undefined }, url, { method: request.method",
      ],
      [/answer = await send\(deps, new URL/, "answer = await send({ ...deps, env: () => undefined }, new URL"],
    ],
    tests: [SENDER],
  },
  {
    name: "fetch follows redirects",
    edits: [[/(?<=\.\.\.init,\s+)redirect: "manual",/, 'redirect: "follow",']],
    tests: [SENDER],
  },
  {
    name: "token sent to an origin outside the resources",
    edits: [[/if \(allowed === undefined \|\| allowed === url\.origin\) return undefined;/, "return undefined;"]],
    tests: [SENDER],
  },
  {
    name: "b64token check removed",
    edits: [[/const B64TOKEN = \/[^\n]+\/;/, "const B64TOKEN = /^/;"]],
    tests: [SENDER],
  },
  {
    name: "fetch writes escape sequences to a terminal",
    // terminalProblem's check for control characters (text that is not UTF-8 is still refused).
    edits: [[/if \(\/\[\\x01-[^\n]+\.test\(text\)\) \{/, "if (false) {"]],
    tests: [SENDER],
  },
  {
    name: "an assertion for the token endpoint goes to a PAR endpoint on another host",
    edits: [[
      /return target && target\.origin !== parseUrl\(tokenEndpoint\)\?\.origin \? target\.href : tokenEndpoint;/,
      "return tokenEndpoint;",
    ]],
    tests: [SENDER],
  },
  {
    name: "no cap on an API's answer",
    edits: [[/maxBytes: API_MAX_BODY_BYTES,/, "maxBytes: Infinity,"]],
    tests: [SENDER],
  },
  // Issue 19 §3: one way to find and lock an entry; only the user's own files, only the tool's own deleted.
  {
    name: "logout deletes without taking the lock",
    // logoutEntry's lock (its failure is a refusal, `left`), not the refresh's, which comes first.
    edits: [[
      /lock = await lockEntry\(name, deps\);(?=\s+\} catch \(error\) \{\s+return left\(error\);)/,
      "lock = { release() {} };",
    ]],
    tests: [ENTRIES],
  },
  {
    name: "logout --all sends the secret to every issuer",
    edits: [[
      /return sameIssuer\(entry\.issuer, config\.issuer\) && entry\.clientId === config\.clientId;/,
      "return entry.clientId === config.clientId;",
    ]],
    tests: [ENTRIES],
  },
  {
    name: "a symlinked entry is followed",
    edits: [[/const info = Deno\.lstatSync\(path\);/, "const info = Deno.statSync(path);"]],
    tests: [ENTRIES],
  },
  {
    name: "list() returns every *.json",
    edits: [[
      /!entry\.isDirectory && entry\.name\.endsWith\("\.json"\) && ENTRY_NAME\.test\(name\)/,
      'entry.name.endsWith(".json")',
    ]],
    tests: [ENTRIES],
  },
  {
    name: "an entry of another uid is trusted",
    edits: [[/owner !== null && file\.uid !== null && file\.uid !== owner/, "false"]],
    tests: [ENTRIES],
  },
  {
    name: "a cache folder others can change is trusted",
    edits: [[/folder\.mode !== null && \(folder\.mode & 0o022\) !== 0/, "false"]],
    tests: [ENTRIES],
  },
  {
    name: "a save removes every old *.tmp in the cache folder",
    edits: [[/!CACHE_TEMPORARY\.test\(entry\.name\)/, '!entry.name.endsWith(".tmp")']],
    tests: [ENTRIES],
  },
  // Issue 19 §1: trust follows the source (SECURITY.md 13). mayGive decides which source may give
  // each destination and credential setting; cacheKey keeps hand-given endpoints apart.
  {
    name: ".env endpoints merged into a trusted destination",
    edits: [[/return !\(source === "\.env" && trust\.decidedBy === "own"\);/, "return true;"]],
    tests: [TRUST],
  },
  {
    name: "an environment secret sent to a .env issuer",
    edits: [[
      /trust\.decidedBy === "\.env" \? source === "\.env" :/,
      'trust.decidedBy === ".env" ? source !== "profile" :',
    ]],
    tests: [TRUST],
  },
  {
    name: "a .env's credentials used with the person's own destination",
    edits: [[/(?<=trust\.decidedBy === "\.env" \? source === "\.env" : )source !== "\.env"/, "true"]],
    tests: [TRUST],
  },
  {
    name: "a .env that decides may put an endpoint on another host",
    edits: [[/if \(trust\.decidedBy === "\.env"\) checkProjectEndpoints\(/, "if (false) checkProjectEndpoints("]],
    tests: [TRUST],
  },
  {
    name: "a server a .env points at may send the browser to another host than its other endpoints",
    edits: [[
      /if \(config\.trust\?\.decidedBy === "\.env"\) checkProjectMetadata\(/,
      "if (false) checkProjectMetadata(",
    ]],
    tests: [TRUST],
  },
  {
    name: "hand-given endpoints left out of the cache key",
    edits: [[/if \(manual\.length > 0\) parts\.push\(\{ endpoints: [^\n]+\n/, ""]],
    tests: [TRUST],
  },
  // Issue 19, section 4: the callback server under pressure.
  {
    name: "the start address also answers / (any local process can fetch the authorization request)",
    edits: [[
      /timingSafeEqual\(url\.pathname, options\.startPath\)/,
      '(url.pathname === "/" || timingSafeEqual(url.pathname, options.startPath))',
    ]],
    tests: [CALLBACK],
  },
  {
    name: "the start address made constant",
    edits: [[/crypto\.getRandomValues\(new Uint8Array\(START_PATH_BYTES\)\)/, "new Uint8Array(START_PATH_BYTES)"]],
    tests: [CALLBACK],
  },
  // The connection guard in front of Deno.serve (issue 19, section 4 follow-up).
  {
    name: "the callback server stops accepting at the first failed accept (out of descriptors)",
    edits: [[/if \(closing \|\| error instanceof Deno\.errors\.BadResource\) return;/, "return;"]],
    tests: [CALLBACK],
  },
  {
    name: "no limit on the callback server's connections (all accepted, up to the descriptor limit)",
    edits: [[/let cap = MAX_CONNECTIONS;/, "let cap = Infinity;"]],
    tests: [CALLBACK],
  },
  {
    name: "idle connections never make room for others",
    edits: [[/return c\.requested \? c\.answered \|\| age >= OLD_MS : age >= IDLE_GRACE_MS;/, "return false;"]],
    tests: [CALLBACK],
  },
  {
    name: "connections kept alive after their answer never make room for others",
    edits: [[/c\.answered \|\| age >= OLD_MS/, "age >= OLD_MS"]],
    tests: [HOSTILE],
  },
  {
    name: "a connection kept busy holds its place for good",
    edits: [[/c\.answered \|\| age >= OLD_MS/, "c.answered"]],
    tests: [CALLBACK],
  },
  {
    name: "the callback server's close waits for clients to close their kept-alive connections",
    edits: [[/\(connection\) => connection\.flushed\)/, "(connection) => connection.done)"]],
    tests: [CALLBACK],
  },
  {
    name: "no descriptors kept free (Deno.serve's own accept may fail, which ends it for good)",
    edits: [[/reserveDescriptors\(folder, FREE_DESCRIPTORS\);/, ""]],
    tests: [CALLBACK],
  },
  {
    name: "Deno.serve's socket in a folder others can enter",
    edits: [[
      /folder = Deno\.makeTempDirSync\(\{ prefix: "oauth-login-" \}\);/,
      'folder = Deno.makeTempDirSync({ prefix: "oauth-login-" }); Deno.chmodSync(folder, 0o755);',
    ]],
    tests: [CALLBACK],
  },
  {
    name: "Deno.serve's socket folder left behind",
    edits: [[/await Deno\.remove\(folder!, \{ recursive: true \}\)/, "await Promise.resolve()"]],
    tests: [CALLBACK],
  },
  {
    name: "DENO_SERVE_ADDRESS obeyed (Deno serves the callback where it points)",
    edits: [[/Deno\.env\.delete\(variable\.variable\);/, "void 0;"]],
    tests: [CALLBACK],
  },
  {
    name: "a callback server Deno moved is used (no check of where it listens)",
    edits: [[
      /if \(moved\) \{/,
      "if (false) {",
    ]],
    tests: [CALLBACK],
  },
  // Issue 19, section 5: the guards of the seams.
  {
    name: "Google's accepted iss matched as a substring",
    edits: [[/accepted\.includes\(claims\.iss\)/, "accepted.some((iss) => claims.iss.includes(iss))"]],
    tests: [PROVIDERS],
  },
  {
    name: "any iss accepted from a Google ID token",
    edits: [[/accepted\.includes\(claims\.iss\)/, "true"]],
    tests: [PROVIDERS],
  },
  {
    name: "the device flow shows and opens a verification address that is not https",
    // deviceAddress: the device answer's addresses, not the metadata's endpoints.
    edits: [[
      /(?<=function deviceAddress\([^]*?)return assertEndpoint\(value, name, issuer\);/,
      "return new URL(value as string);",
    ]],
    tests: [GUARDS],
  },
  {
    name: "a granted scope matched as a substring of the granted scopes",
    edits: [[/!granted\.some\(\(g\) => sameScope\(scope, g\)\)/, "!tokens.scope.includes(scope)"]],
    tests: [GUARDS],
  },
  {
    name: "a nonce for any scope that contains openid",
    edits: [[
      /nonce: scopeList\(scope\)\.includes\("openid"\) && !noIssuer/,
      'nonce: scope.includes("openid") && !noIssuer',
    ]],
    tests: [GUARDS],
  },
  {
    name: "offline_access found inside another scope (the refresh-token remedy)",
    edits: [[/if \(scopeList\(scope\)\.includes\("offline_access"\)\) \{/, 'if (scope.includes("offline_access")) {']],
    tests: [GUARDS],
  },
  {
    name: "--save-profile keeps every --param not named like a secret (api_key, token)",
    edits: [[
      /if \(PROFILE_PARAMS\.has\(key\)\) params\[key\]/,
      "if (!/secret|password|assertion/i.test(key)) params[key]",
    ]],
    tests: [GUARDS, PROFILES],
  },
  {
    name: "a real Ctrl-C (SIGINT) is not caught: it ends a refresh midway",
    // realDeps' catchInterrupt, which renew and every request to the issuer call before they begin.
    edits: [[/if \(!listening\) Deno\.addSignalListener\("SIGINT", \(\) => controller\.abort\(\)\);/, ""]],
    tests: [GUARDS],
  },
  {
    name: "Ctrl-C during a refresh drops the refreshed tokens (checked before they are saved)",
    edits: [[
      /(await saveEntry\(config, deps, name, next, \{ previous: current, item \}\);)(\s+)(if \(interrupt\.aborted\) throw new LoginError\("interrupted", "Interrupted"\);)/,
      "$3$2$1",
    ]],
    tests: [GUARDS, LIFETIMES],
  },
  // ── Issue 19's red team (the follow-up): each finding's property, broken back ─────────────────────
  {
    name: "a profile's resource, audience and assertion audience ignored (read from the command line only)",
    edits: [[/resolveModernConfig\(\{ \.\.\.cli, flags \}, pick/, "resolveModernConfig(cli, pick"]],
    tests: [PROFILES],
  },
  {
    name: "a .env turns off DPoP that the person's profile turns on",
    edits: [[/if \(source === "\.env" && trust\.kept\.some\(/, "if (false && trust.kept.some("]],
    tests: [TRUST],
  },
  // Outsider attack 3: what a server's answers cannot make the tool do.
  {
    name: "a project's server sends the person to another host to enter a device code",
    edits: [[
      /if \(config\.trust\?\.decidedBy === "\.env"\) checkProjectDeviceAddress\(/,
      "if (false) checkProjectDeviceAddress(",
    ]],
    tests: [ANSWERS],
  },
  {
    name: "the QR code carries verification_uri_complete on another host",
    edits: [[
      /const verificationComplete = withCode\?\.host === verification\.host \? withCode : undefined;/,
      "const verificationComplete = withCode;",
    ]],
    tests: [ANSWERS],
  },
  {
    name: "a preset's own URLs serve a server given by its endpoints (GitHub Enterprise under --provider github)",
    edits: [[
      /return origins\.length === 0 \|\| \(origin !== undefined && origins\.includes\(origin\)\);/,
      "return true;",
    ]],
    tests: [ANSWERS],
  },
  {
    name: "one pushed request_uri handed to the start address and to the other machine",
    edits: [[/used: offeredElsewhere \}/, "used: false }"]],
    tests: [ANSWERS],
  },
  {
    name: "a pushed request's expires_in taken as it is",
    edits: [[
      /Math\.min\(MAX_PUSHED_LIFETIME_MS, (Math\.max\(0, Number\(pushed\.expires_in\) \* 1000 \|\| 0\))\)/,
      "$1",
    ]],
    tests: [ANSWERS],
  },
  {
    name: "invisible characters (U+2028, zero-width, BOM, tags) pass sanitize",
    edits: [[
      /\\u00ad\\u061c\\u115f\\u1160\\u180e\\u200b-\\u200f\\u2028-\\u202e\\u2060-\\u206f\\u3164\\ufeff\\uffa0\\u\{e0000\}-\\u\{e007f\}/,
      "\\u202a-\\u202e\\u2066-\\u2069",
    ]],
    tests: [ANSWERS],
  },
  {
    name: "a preset's accepted issuers trusted for a server off its hosts (--provider google, another issuer)",
    edits: [[
      /presetOf\(config\)\?\.acceptedIssuers && presetServes\(presetOf\(config\), as\.issuer, deps\.presetBase\)/,
      "presetOf(config)?.acceptedIssuers",
    ]],
    tests: [PROVIDERS],
  },
  // Outsider attack 2: a .env's grant, token files others could plant, exec's environment, hints.
  {
    name: "a .env chooses the grant the person's own client and secret are used for",
    edits: [[/"assertionAudience",\n {2}"grant",\n/, '"assertionAudience",\n']],
    tests: [TRUST],
  },
  {
    name: "a token file judged by its others-write bit alone (group, owner and folder unchecked)",
    edits: [[
      /const problem = trustedFileProblem\("token file", path, facts, userId\(\), "keep the token in a file of your own"\);/,
      'const problem = (facts.file.mode ?? 0) & 0o002 ? trustedFileProblem("token file", path, facts, userId(), "") : undefined;',
    ]],
    tests: [MACHINE],
  },
  {
    name: "exec's program gets the client secret and the subject token's variable",
    edits: [[/for \(const name of options\.unset \?\? \[\]\) delete env\[name\];/, ""]],
    tests: [MACHINE],
  },
  {
    name: "exec asks for no variable to be left out",
    edits: [[/unset: credentialVariables\(config\)\.filter/, "unset: [].filter"]],
    tests: [MACHINE],
  },
  {
    name: "a .env's OAUTH_PROFILE mixed into the environment's server",
    edits: [[/const own = chosen\?\.by === `\$\{ENV_VARS\.profile\} in \.env`\s*\? /, "const own = false ? "]],
    tests: [PROFILES],
  },
  {
    name: "a preset's endpoints left out of a .env's check (its own token endpoint beside GitHub's browser sign-in)",
    edits: [
      [
        /urls\.find\(\(\[given\]\) => given === key\)/,
        'urls.find(([given, words]) => given === key && !words.includes(" preset\'s "))',
      ],
      [
        /if \(origin === undefined \|\| allowed\.includes\(origin\)\) continue;/,
        'if (origin === undefined || allowed.includes(origin) || words.includes(" preset\'s ")) continue;',
      ],
    ],
    tests: [TRUST],
  },
  {
    name: "a preset's own hosts trusted wherever the person signs in",
    edits: [[
      /return own\.includes\(home\.origin\) \? \[\.\.\.new Set\(\[home\.origin, \.\.\.own\]\)\] : \[home\.origin\];/,
      "return [...new Set([home.origin, ...own])];",
    ]],
    tests: [TRUST],
  },
  {
    name: "introspection, revocation and UserInfo left out of the check of a server a .env points at",
    edits: [[
      / {2}introspection_endpoint: "sends your tokens",\n {2}revocation_endpoint: "sends your tokens",\n {2}userinfo_endpoint: "sends your tokens",\n/,
      "",
    ]],
    tests: [TRUST],
  },
  {
    name: "a .env's client key may be any of the person's files (an absolute path elsewhere, or through ..)",
    edits: [[/if \(!inside \|\| value\.split\(/, "if (false && value.split("]],
    tests: [TRUST],
  },
  {
    name: "a .env's client key may be a link to a file outside the project",
    edits: [[/ {2}checkProjectKey\(clientKey, dir, envFile\);\n/, ""]],
    tests: [TRUST],
  },
  {
    name:
      "a proxy URL with a path, query or fragment accepted (an unencoded # in its password: the password is the port)",
    edits: [[/if \(!url \|\| !url\.hostname \|\| url\.pathname\.length > 1 [^{]*\{/, "if (!url) {"]],
    tests: [SENDER],
  },
  {
    name: "a proxy variable that holds no URL is passed over (the request goes direct)",
    edits: [[/if \(route\?\.invalid\) throw invalidProxy\(route\.reason\);/, ""]],
    tests: [SENDER],
  },
  {
    name: "a hint's values pasted into a shell unquoted (a server's $(…) runs)",
    edits: [[/return \/\^\[\\w\.:\/@%\+=,-\]\+\$\/\.test\(text\) \? text : [^;]+;/, "return text;"]],
    tests: [TRUST],
  },
  {
    name: "fetch takes a URL with credentials (they replace the token: Basic to the API)",
    edits: [[
      /if \(url\.username \|\| url\.password\) \{\n(\s*)\/\/ They would replace the token/,
      "if (false) {\n$1// They would replace the token",
    ]],
    tests: [SENDER],
  },
  {
    // Killed where the suite runs as root on Linux (as the other ownership mutants: only root can plant another uid's file).
    name: "the uid the tasks' sys permission gives is not used (root reads another user's planted entry)",
    edits: [[
      /if \(Deno\.permissions\.querySync\(\{ name: "sys", kind: "uid" \}\)\.state === "granted"\)/,
      "if (false)",
    ]],
    tests: [ENTRIES],
  },
  {
    name: "a config file (or token file) others can change is trusted (it decides where the environment's secret goes)",
    edits: [[
      /if \(file\.mode !== null && \(file\.mode & 0o022\) !== 0\) \{/,
      "if (false) {",
    ]],
    tests: [PROFILES],
  },
  {
    name: "a config file (or token file) in a folder others can change is trusted",
    edits: [[
      /if \(own\(folder\.uid\) && \(\(mode & 0o022\) === 0 \|\| \(mode & 0o1000\) !== 0\)\) continue;/,
      "continue;",
    ]],
    tests: [PROFILES],
  },
  {
    name: "the callback server answers another user's program (which read the start address in the opener's argv)",
    edits: [[/\}, admit && \(async \(\) => \(await admit\(\)\) \|\| \(spliced\.cut\(\), false\)\)\);/, "});"]],
    tests: [CALLBACK],
  },
  {
    name: "ss asked for established connections only (a client that half-closed after its request goes unseen)",
    edits: [[/args: \["-tanHe"\],/, 'args: ["-tnHe", "state", "established"],']],
    tests: [CALLBACK],
  },
  {
    name: "the start address let through when ss fails (thousands of sockets to slow it down)",
    edits: [[/\.catch\(\(\) => null\);/, ".catch(() => undefined);"]],
    tests: [CALLBACK],
  },
  {
    name: "the device flow opens the address that carries the code (in the opener's argv)",
    edits: [[/deps\.openUrl\(verification\.href\)/, "deps.openUrl((verificationComplete ?? verification).href)"]],
    tests: [CALLBACK],
  },
  {
    name: "the device flow polls for as long as the server says the code lives (a year)",
    edits: [[/: DEVICE_WAIT_MS;/, ": Infinity;"]],
    tests: [CALLBACK],
  },
  {
    name: "the browser opener inherits OAUTH_CLIENT_SECRET",
    edits: [[
      /const env = Object\.fromEntries\(Object\.values\(ENV_VARS\)\.map\(\(name\) => \[name, ""\]\)\);/,
      "const env = {};",
    ]],
    tests: [CALLBACK],
  },
  // Issue 23: the first hour. Secrets stay out of the messages that name a wrong setting, and a
  // pushed request_uri is used once (RFC 9126 §4) and never after its expires_in.
  {
    name: "the browser's callback address given as --issuer is quoted with its code",
    edits: [[
      /`The issuer "\$\{url\.origin\}\$\{url\.pathname\}\$\{url\.search \? "\?…" : ""\}" is the address/,
      '`The issuer "${url.origin}${url.pathname}${url.search}" is the address',
    ]],
    tests: [FIRSTHOUR],
  },
  {
    name: "a .env warning about a value cut at # shows the line, value and all",
    edits: [[/cuts the value of \$\{name\} at "#"/, 'cuts the value of ${name} (${line}) at "#"']],
    tests: [FIRSTHOUR],
  },
  {
    name: "a pushed request_uri is handed to the browser again after it was used",
    edits: [[/current\.used \|\| deps\.now\(\) >= current\.expiresAt/, "deps.now() >= current.expiresAt"]],
    tests: [FIRSTHOUR],
  },
  {
    name: "an expired pushed request_uri is handed to the browser",
    edits: [[/current\.used \|\| deps\.now\(\) >= current\.expiresAt/, "current.used"]],
    tests: [FIRSTHOUR],
  },
  // Issue 20: an API's metadata says where to sign in; what it may choose, and what it never gets.
  {
    name: "an API's metadata may claim another origin (or a sibling path) as its resource",
    edits: [[/const within = claimed\.origin === url\.origin &&/, "const within = true ||"]],
    tests: [RESOURCE],
  },
  {
    name: "an API on this machine may name plain-http metadata on any host",
    edits: [[
      /const local = url\?\.protocol === "http:" && isLoopbackTokenHost\(url\.hostname\) &&/,
      'const local = url?.protocol === "http:" ||',
    ]],
    tests: [RESOURCE],
  },
  {
    name: "an https API may name a plain-http authorization server",
    edits: [[/url\.protocol === "http:" && !isLoopbackTokenHost\(api\.hostname\)/, "false"]],
    tests: [RESOURCE],
  },
  {
    name: "the person's own client id and secret go to a server only an API named",
    // ownClientSettings: a setting a flag did not give is set aside.
    edits: [[
      /if \(value === undefined \|\| source === undefined \|\| source === "flag"\) return value;/,
      "return value;",
    ]],
    tests: [RESOURCE],
  },
  {
    name: "a step-up refused again signs in again (a loop)",
    edits: [[/if \(stepped\.has\(asked\.error\)\) \{/, "if (false) {"]],
    tests: [RESOURCE],
  },
  {
    name: "a registered client is used after its secret expired (client_secret_expires_at)",
    edits: [[
      /if \(secret && expires && expires \* 1000 <= now \+ SECRET_EXPIRY_MARGIN_MS\) return undefined;/,
      "",
    ]],
    tests: [RESOURCE],
  },
  {
    name: "a client registration is kept under an entry's name (listed as a login, removable as one)",
    edits: [[
      /\["client registration", issuer, \[\.\.\.redirectUris\]\.sort\(\)\]\)\}\.client`/,
      '["client registration", issuer, [...redirectUris].sort()])}`',
    ]],
    tests: [RESOURCE],
  },
  // Issue 21: long-lived secrets sealed under a key in the keychain, every keychain call bounded and
  // never prompting, the cached token path untouched, and only the tool's own items removed.
  {
    name: "keychain: the refresh token is kept in the file beside its sealed copy",
    edits: [[
      /stored = \{ \.\.\.stored, sealed: await sealSecrets\(/,
      "stored = { ...entry, sealed: await sealSecrets(",
    ]],
    tests: [KEYCHAIN],
  },
  {
    name: "keychain: a registered client's secret is kept in its file",
    edits: [[/if \(registration\.clientSecret && config\.tokenStorage !== "file"\)/, "if (false)"]],
    tests: [KEYCHAIN],
  },
  {
    name: "keychain: secret-tool is given the key in an argument",
    edits: [[/const args = \["store", `--label=\$\{label\}`,/, 'const args = ["store", `--label=${label} ${secret}`,']],
    tests: [KEYCHAIN],
  },
  {
    name: "keychain: a keychain tool has no deadline",
    edits: [[
      /const ms = deps\.os === "windows" \? KEYCHAIN_DEADLINE_WINDOWS_MS : KEYCHAIN_DEADLINE_MS;/,
      "const ms = 2147483647;",
    ]],
    tests: [KEYCHAIN],
  },
  {
    name: "keychain: a tool past its deadline is not killed",
    edits: [[/stop\.abort\(\); \/\/ ends the tool if it still runs/, "// ends the tool if it still runs"]],
    tests: [KEYCHAIN],
  },
  {
    name: "keychain: a problem is not remembered for the process",
    edits: [[/if \(error instanceof KeychainProblem\) session\.problem \?\?= error;/, ""]],
    tests: [KEYCHAIN],
  },
  {
    name: "keychain: a locked Secret Service is not probed (its items asked for, which can prompt)",
    edits: [[/if \(state === true\) \{/, "if (state === undefined && false) {"]],
    tests: [KEYCHAIN],
  },
  {
    name: "keychain: a .env chooses where the tokens are kept",
    edits: [[/if \(\(PERSONAL_KEYS as readonly string\[\]\)\.includes\(key\)\) return source !== "\.env";/, ""]],
    tests: [KEYCHAIN],
  },
  {
    name: "keychain: the cached token path opens the sealed secrets",
    edits: [[
      /if \(!B64TOKEN\.test\(entry\.accessToken\)\) throw unusableToken\(config\);/,
      "entry = await openEntry(entry, deps);\n  if (!B64TOKEN.test(entry.accessToken)) throw unusableToken(config);",
    ]],
    tests: [KEYCHAIN],
  },
  {
    name: "keychain: --token-storage keychain signs in without a keychain",
    edits: [[/if \(config\.tokenStorage !== "keychain"\) return;/, "return;"]],
    tests: [KEYCHAIN],
  },
  {
    name: "keychain: logout leaves the keychain item",
    edits: [[/return !item \|\| await forgetItem\(item, deps\)/, "return !item || await Promise.resolve(item)"]],
    tests: [KEYCHAIN],
  },
  {
    name: "keychain: logout --all removes another folder's items",
    edits: [[/if \(!name \|\| !CACHE_FILE\.test\(`\$\{name\}\.json`\)\) continue;/, "if (!file) continue;"]],
    tests: [KEYCHAIN],
  },
  {
    name: "keychain: sealed secrets not bound to their item (no AES-GCM additional data)",
    edits: [
      [/const additionalData = new TextEncoder\(\)\.encode\(item\);/, "const additionalData = new Uint8Array();"],
      [
        /const additionalData = new TextEncoder\(\)\.encode\(sealed\.item\);/,
        "const additionalData = new Uint8Array();",
      ],
    ],
    tests: [KEYCHAIN],
  },
  // ── Issue 22: logins without a person, and exec (tests/machine_test.ts) ──────────────────────────
  {
    name: "a .env names a token source (the person's files or variables read and sent)",
    // mayGive's rule for SOURCE_KEYS: never from the .env.
    edits: [[
      /source === "flag" \|\| \(source !== "\.env" && trust\.decidedBy !== "\.env"\)/,
      'source === "flag" || trust.decidedBy !== ".env"',
    ]],
    tests: [MACHINE],
  },
  {
    name: "the environment's token source goes to a server a .env chose",
    edits: [[/source === "flag" \|\| \(source !== "\.env" && trust\.decidedBy !== "\.env"\)/, 'source !== ".env"']],
    tests: [MACHINE],
  },
  {
    name: "the subject token shown in the trace",
    edits: [[/ {2}"subject_token",\n/, ""]],
    tests: [MACHINE],
  },
  {
    name: "the GitHub Actions request token sent over plain http to another host",
    edits: [[/if \(!url \|\| tokenRefusal\(url\)\) \{/, "if (!url) {"]],
    tests: [MACHINE],
  },
  {
    name: "each process that waited for the lock runs the grant again (the entry not read again under it)",
    // renewGrant's check of the entry once the lock is held (refreshLocked's comes later in login.ts).
    edits: [[
      /if \(current && isFresh\(current, deps\.now\(\), config\.minTtlMs\) && current\.accessToken !== rejected\) return current;/,
      "",
    ]],
    tests: [MACHINE],
  },
  {
    name: "a grant's entry keyed as a person's (the grant left out of the cache key)",
    edits: [[/if \(config\.grant\) parts\.push\(\{ grant: [^\n]+\n/, ""]],
    tests: [MACHINE],
  },
  {
    name: "a token file any user may change is read and sent",
    edits: [[
      /const problem = trustedFileProblem\("token file", /,
      'const problem = undefined && trustedFileProblem("token file", ',
    ]],
    tests: [MACHINE],
  },
  {
    name: "issued_token_type not checked",
    edits: [[/ {2}checkIssuedTokenType\(tokens, config\);\n/, ""]],
    tests: [MACHINE],
  },
  {
    name: "exec puts the token on the program's command line",
    edits: [[/args: program\.args,/, "args: [...program.args, entry.accessToken],"]],
    tests: [MACHINE],
  },
  {
    name: "exec hands a DPoP-bound token to a program",
    edits: [
      [/if \(config\.dpop \|\| \(found\.entry && holds\(found\.entry, "dpop_key"\)\)\) throw dpopForExec\(\);/, ""],
      [/if \(holds\(entry, "dpop_key"\) \|\| \/\^dpop\$\/i\.test\(entry\.tokenType\)\) throw dpopForExec\(\);/, ""],
    ],
    tests: [MACHINE],
  },
  {
    name: "exec --scope gives the program a token broader than asked",
    edits: [[/if \(broader\.length > 0\) \{/, "if (false) {"]],
    tests: [MACHINE],
  },
  {
    name: "exec passes no signal on to its program",
    edits: [[/(?<=const pass = \(\) => \{[^]*?)child\.kill\(signal\);/, "void signal;"]],
    tests: [MACHINE],
  },
  // ── Issue 22 meets issues 20 and 21: a grant's secrets sealed, its server never an API's choice ──
  {
    name: "keychain: a grant's entry from login --grant keeps its refresh token in the file",
    edits: [[
      /(?<=entry = await runGrant\(config, deps\);[^]*?)await saveEntry\(config, deps, name, entry, \{[^\n]*\}\);/,
      'await deps.storage.write(`${name}.json`, JSON.stringify(entry, null, 2) + "\\n");',
    ]],
    tests: [KEYCHAIN],
  },
  {
    name: "keychain: a grant's renewal keeps the rotated refresh token in the file",
    edits: [[
      /(?<=next \?\?= await runGrant\(config, deps, open\);\s*)await saveEntry\(config, deps, name, next, \{ previous: current, item \}\);/,
      'await deps.storage.write(`${name}.json`, JSON.stringify(next, null, 2) + "\\n");',
    ]],
    tests: [KEYCHAIN],
  },
  {
    name: "keychain: --token-storage keychain runs a grant (and sends its subject token) without a keychain",
    edits: [
      [/(?<=async function grantAndSave[^]*?)await keychainReady\(config, deps\);/, ""],
      [/if \(!open\) await keychainReady\(config, deps\);/, ""],
    ],
    tests: [KEYCHAIN],
  },
  {
    name: "resource: a grant lets an API's metadata choose the server (its secret and subject token sent there)",
    edits: [[/settings\.provider \|\| settings\.grant \|\|/, "settings.provider ||"]],
    tests: [RESOURCE],
  },
  {
    name: "resource: a grant's record under an API's entry name is taken for the person's sign-in for it",
    edits: [[
      /\(entry\.profile \?\? ""\) === \(config\.profile \?\? ""\) && !entry\.grant/,
      '(entry.profile ?? "") === (config.profile ?? "")',
    ]],
    tests: [RESOURCE],
  },
];

/** How long one run of the test files may take before it counts as a hang. */
const RUN_BOUND_MS = 180_000;
const PERMISSIONS = ["--allow-net", "--allow-env", "--allow-read", "--allow-write", "--allow-run", "--allow-sys=uid"];
const ROOT = new URL("../", import.meta.url).pathname;

/** Copies the repository (not .git, not node_modules) into a new temporary folder. */
async function scratchCopy(): Promise<string> {
  const target = await Deno.makeTempDir({ prefix: "oauth-login-mutants-" });
  const copy = async (from: string, to: string) => {
    for await (const entry of Deno.readDir(from)) {
      if (entry.name === ".git" || entry.name === "node_modules") continue;
      if (entry.isDirectory) {
        await Deno.mkdir(`${to}/${entry.name}`);
        await copy(`${from}/${entry.name}`, `${to}/${entry.name}`);
      } else if (entry.isFile) {
        await Deno.copyFile(`${from}/${entry.name}`, `${to}/${entry.name}`);
      }
    }
  };
  await copy(ROOT, target);
  return target;
}

interface Outcome {
  passed: number;
  failed: number;
  /** The first failing test's name. */
  firstFailure?: string;
  hung: boolean;
  /** The start of Deno's report of the failures. */
  errors?: string;
  /** Deno's output when no summary came (the mutant did not load). */
  output?: string;
}

/** Runs `deno test` on `files` in `dir`, bounded by RUN_BOUND_MS. */
async function runTests(dir: string, files: string[]): Promise<Outcome> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["test", "--no-check", ...PERMISSIONS, "--sanitize-ops", "--sanitize-resources", ...files],
    cwd: dir,
    env: { NO_COLOR: "1", CI: "" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let hung = false;
  const timer = setTimeout(() => {
    hung = true;
    child.kill("SIGKILL");
  }, RUN_BOUND_MS);
  const { stdout, stderr } = await child.output();
  clearTimeout(timer);
  const output = new TextDecoder().decode(stdout) + new TextDecoder().decode(stderr);
  const summary = output.match(/^(?:ok|FAILED) \| (\d+) passed.*?\| (\d+) failed/m);
  if (!summary) return { passed: 0, failed: 0, hung, output };
  const failures = output.slice(output.lastIndexOf(" FAILURES "));
  const firstFailure = failures.match(/^\s*(.+?) => \.\/\S+:\d+:\d+$/m)?.[1];
  const errors = output.slice(output.indexOf(" ERRORS "), output.indexOf(" FAILURES ")).slice(0, 3000);
  return { passed: Number(summary[1]), failed: Number(summary[2]), firstFailure, hung, errors };
}

/** Applies the mutant's edits, or says which pattern no longer matches. */
function mutate(source: string, mutant: Mutant): { text: string } | { missing: RegExp } {
  let text = source;
  for (const [pattern, replacement] of mutant.edits) {
    if (!pattern.test(text)) return { missing: pattern };
    text = text.replace(pattern, replacement);
  }
  return { text };
}

async function mainMutants(words: string[]): Promise<number> {
  const chosen = words.length ? MUTANTS.filter((m) => words.some((w) => m.name.includes(w))) : MUTANTS;
  if (chosen.length === 0) {
    console.error(`no mutant's name contains ${words.join(" or ")}`);
    return 2;
  }
  const dir = await scratchCopy();
  let bad = 0;
  try {
    const source = await Deno.readTextFile(`${dir}/login.ts`);
    const files = [...new Set(chosen.flatMap((m) => m.tests))];
    const baseline = await runTests(dir, files);
    if (baseline.hung || baseline.output !== undefined || baseline.failed > 0) {
      console.log(`baseline: the unmutated copy is not green (${files.join(", ")}); nothing can be concluded`);
      if (baseline.output) console.log(baseline.output.slice(-2000));
      if (baseline.firstFailure) console.log(`first failure: ${baseline.firstFailure}\n${baseline.errors}`);
      return 1;
    }
    console.log(`baseline: ${baseline.passed} tests green in ${files.join(", ")}`);
    for (const mutant of chosen) {
      const mutated = mutate(source, mutant);
      if ("missing" in mutated) {
        bad++;
        console.log(
          `PATTERN NOT FOUND  ${mutant.name}: ${mutated.missing} (login.ts changed: update tests/mutants.ts)`,
        );
        continue;
      }
      await Deno.writeTextFile(`${dir}/login.ts`, mutated.text);
      const started = performance.now();
      const outcome = await runTests(dir, mutant.tests);
      const seconds = ((performance.now() - started) / 1000).toFixed(1);
      await Deno.writeTextFile(`${dir}/login.ts`, source);
      if (outcome.hung) {
        bad++;
        console.log(`SURVIVED  ${mutant.name}: the suite hung for ${RUN_BOUND_MS / 1000} s instead of failing`);
      } else if (outcome.output !== undefined) {
        bad++;
        console.log(`BROKEN    ${mutant.name}: the mutant did not load (${seconds} s); Deno said:`);
        console.log(outcome.output.slice(-1500));
      } else if (outcome.failed > 0) {
        console.log(
          `killed    ${mutant.name}: ${outcome.failed} failed in ${mutant.tests.join(", ")} (${seconds} s), ` +
            `first: "${outcome.firstFailure ?? "?"}"`,
        );
      } else {
        bad++;
        console.log(`SURVIVED  ${mutant.name}: ${outcome.passed} passed in ${mutant.tests.join(", ")} (${seconds} s)`);
      }
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  console.log(bad ? `${bad} of ${chosen.length} mutants not killed` : `all ${chosen.length} mutants killed`);
  return bad ? 1 : 0;
}

if (import.meta.main) Deno.exit(await mainMutants(Deno.args));
