/**
 * A mock OAuth 2.0 / OpenID Connect issuer for the tests and the demo. It runs in-process on
 * 127.0.0.1, serves both discovery documents, `/authorize` (auto-approve or a small sign-in page),
 * `/token`, `/introspect`, `/userinfo` and a JWKS, signs ID tokens with a WebCrypto key, and records
 * every request it receives. Nothing here is meant for production.
 *
 *     deno task demo     # a real login against this mock, in your browser if one can be opened
 *
 * @module
 */
import { fileStorage, main as loginMain, realDeps, testing } from "../login.ts";
const { openWithSystemBrowser } = testing;

// ── Types ───────────────────────────────────────────────────────────────────────────────────────

export type MockClientAuth = "none" | "client_secret_basic" | "client_secret_post";

export interface MockClient {
  id: string;
  secret?: string;
  auth: MockClientAuth;
  /** Registered redirect URIs; a loopback IP literal matches any port (RFC 8252 §7.3). */
  redirectUris: string[];
  /** The name the sign-in page shows (default: the id). */
  name?: string;
}

export interface MockUser {
  sub: string;
  username: string;
  email: string;
  name: string;
}

export interface MockOptions {
  /** The issuer's path, e.g. "/oauth2/default" as Okta has it. */
  path?: string;
  clients?: MockClient[];
  user?: MockUser;
  /** Approve at once (tests), or show a sign-in page with Approve and Deny (the demo). */
  autoApprove?: boolean;
  /** Which discovery documents are served ("none": no discovery at all, as GitHub's OAuth apps). */
  discovery?: "both" | "oauth2" | "oidc" | "none";
  /** Whether the server sends (and advertises) the RFC 9207 `iss` parameter. */
  issParameter?: boolean;
  /** Seconds an access token lives. */
  accessTokenTtl?: number;
  /** Refresh tokens are single-use: each refresh returns a new one; reusing an old one revokes the grant. */
  rotateRefreshTokens?: boolean;
  /** The mock's clock (ms since the epoch). */
  now?: () => number;
  /** Per-endpoint paths from the origin (GitHub's "/login/oauth/access_token"); default `${path}/NAME`. */
  paths?: Partial<Record<MockEndpoint, string>>;
  /** How the token and device endpoints answer: a provider's documented deviations. */
  dialect?: MockDialect;
  /** A REST "who am I" endpoint (GitHub's `/user`, Spotify's `/v1/me`): its path and its JSON body. */
  whoAmI?: { path: string; body: (user: MockUser) => Record<string, unknown> };
  /** More accounts: an authorization request whose `login_hint` names one (username, email or sub) signs in as it. */
  users?: MockUser[];
  /** Reshapes each successful token endpoint answer (see `MockIssuer.shapeToken`). */
  shapeToken?: MockIssuer["shapeToken"];
  /**
   * Pushed authorization requests (RFC 9126) at `/par`: offered (true), or offered and required
   * (`require_pushed_authorization_requests`). Off by default.
   */
  par?: boolean | "required";
  /**
   * Dynamic client registration (RFC 7591) at `/register`: open to any native client with loopback
   * redirect URIs (true), or closed, answering `invalid_client_metadata` ("refuse"). Off by default.
   */
  registration?: boolean | "refuse";
  /**
   * A registration answers with a client secret (`client_secret_basic`) whatever method was asked:
   * RFC 7591 §3.2.1 lets a server choose. Off by default.
   */
  registrationIssuesSecret?: boolean;
  /**
   * Client ID Metadata Documents: a `client_id` that is a URL is fetched (http on loopback too, for
   * tests) and accepted when the document names that URL as its `client_id`. Off by default.
   */
  clientIdMetadataDocuments?: boolean;
}

/** The grant types without a person the mock answers at its token endpoint. */
export const JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer";
export const TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange";
export const ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token";

export type MockEndpoint =
  | "authorize"
  | "token"
  | "introspect"
  | "userinfo"
  | "revoke"
  | "device_authorization"
  | "device"
  | "keys";

/** A provider's deviations from the RFCs, each taken from its public documentation. */
export interface MockDialect {
  /** Token-endpoint errors come with HTTP 200 (GitHub). */
  status200Errors?: boolean;
  /** What joins the granted scopes (GitHub: ","). */
  scopeSeparator?: string;
  /** The token_type sent ("bearer" for GitHub); null leaves it out. */
  tokenType?: string | null;
  /** Token answers are form-encoded whatever the Accept header says. */
  formEncoded?: boolean;
  /** The device answer's name for verification_uri (Google: "verification_url"). */
  verificationUriName?: string;
  /** No expires_in in token answers (Salesforce). */
  omitExpiresIn?: boolean;
  /** No scope in token answers (RFC 6749 §5.1 allows it when the scope is the one asked for). */
  omitScope?: boolean;
  /** Claims merged into each ID token (Entra's tid and iss, say). */
  idTokenClaims?: (mock: MockIssuer) => Record<string, unknown>;
  /**
   * When a refresh token is issued: from the authorization request's (or device request's)
   * parameters. Default: when the scope has offline_access.
   */
  refreshTokenWhen?: (params: URLSearchParams) => boolean;
  /** Whether a loopback `localhost` redirect matches whatever its port (Entra, Keycloak). */
  localhostAnyPort?: boolean;
}

/** Whether a request is the tool's preflight of the authorization URL (it names itself in User-Agent). */
function isPreflight(request: RecordedRequest): boolean {
  return request.method === "GET" && (request.headers["user-agent"] ?? "").startsWith("oauth-login/");
}

export interface RecordedRequest {
  method: string;
  path: string;
  query: Record<string, string>;
  form: Record<string, string>;
  headers: Record<string, string>;
  /** A JSON body (the registration request's), when the request had one. */
  json?: Record<string, unknown>;
  /** For token, introspection and revocation requests: how the client authenticated. */
  clientAuth?: MockClientAuth;
}

interface Authorization {
  clientId: string;
  redirectUri: string;
  challenge: string;
  scope: string;
  nonce?: string;
  state?: string;
  /** The authorization request's parameters (for `dialect.refreshTokenWhen`). */
  params?: URLSearchParams;
  /** The account that signed in (from `login_hint` among `users`), else `user`. */
  user?: MockUser;
}

export const PUBLIC_CLIENT: MockClient = {
  id: "cli-public",
  auth: "none",
  redirectUris: [
    "http://127.0.0.1/callback",
    "http://[::1]/callback",
    "http://localhost:8080/authorization-code/callback",
  ],
};

export const CONFIDENTIAL_CLIENT: MockClient = {
  id: "cli-confidential",
  secret: "s3cret-value-for-tests",
  auth: "client_secret_basic",
  redirectUris: ["http://127.0.0.1/callback", "http://localhost:8080/authorization-code/callback"],
};

export const ALICE: MockUser = {
  sub: "00u1alice",
  username: "alice@example.com",
  email: "alice@example.com",
  name: "Alice",
};

// ── Helpers ─────────────────────────────────────────────────────────────────────────────────────

const encoder = new TextEncoder();

function b64url(bytes: Uint8Array | string): string {
  const data = typeof bytes === "string" ? encoder.encode(bytes) : bytes;
  let binary = "";
  for (const byte of data) binary += String.fromCharCode(byte);
  return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

/** A JWT's claims, decoded without checking its signature (the mock trusts what it is shown). */
export function jwtClaims(token: string): Record<string, unknown> | undefined {
  const parts = token.split(".");
  if (parts.length !== 3) return undefined;
  try {
    const claims = JSON.parse(atob(parts[1].replace(/-/g, "+").replace(/_/g, "/")));
    return claims && typeof claims === "object" ? claims : undefined;
  } catch {
    return undefined;
  }
}

function random(bytes = 24): string {
  return b64url(crypto.getRandomValues(new Uint8Array(bytes)));
}

/** The S256 code challenge of a verifier (RFC 7636 §4.2). */
export async function s256(verifier: string): Promise<string> {
  return b64url(new Uint8Array(await crypto.subtle.digest("SHA-256", encoder.encode(verifier))));
}

function json(body: unknown, status = 200, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { "content-type": "application/json", "cache-control": "no-store", ...headers },
  });
}

function oauthError(error: string, description: string, status = 400): Response {
  return json({ error, error_description: description }, status);
}

/** The same tidy look as the tool's own pages. */
const STYLE = "body{font:16px/1.5 system-ui,sans-serif;max-width:36em;margin:4em auto;padding:0 1em}" +
  "button{font:inherit;padding:.4em 1.2em;margin-right:.5em}";

function html(body: string, status = 200): Response {
  return new Response(
    `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Mock issuer</title><style>${STYLE}</style></head><body>${body}</body></html>`,
    {
      status,
      headers: { "content-type": "text/html; charset=utf-8" },
    },
  );
}

function isLoopbackLiteral(url: URL): boolean {
  return url.hostname === "127.0.0.1" || url.hostname === "[::1]";
}

function redirectMatches(registered: string, requested: string, localhostAnyPort = false): boolean {
  if (registered === requested) return true;
  const a = URL.parse(registered);
  const b = URL.parse(requested);
  if (!a || !b || !(isLoopbackLiteral(a) || (localhostAnyPort && a.hostname === "localhost"))) return false;
  return a.protocol === b.protocol && a.hostname === b.hostname && a.pathname === b.pathname && !b.search;
}

// ── The mock ────────────────────────────────────────────────────────────────────────────────────

export interface MockIssuer {
  /** What the mock starts on its own (making its signing key): `close` waits for it, so no test leaks it. */
  settled: Promise<unknown>;
  /** The issuer identifier; set by `serveMockIssuer`, or by hand for a handler used as `fetch`. */
  issuer: string;
  handler: (request: Request) => Promise<Response>;
  /** Every request received, in order. */
  requests: RecordedRequest[];
  /** Answer a request differently: return a Response to send it instead of the normal answer. */
  intercept?: (
    record: RecordedRequest,
    url: URL,
    request: Request,
  ) => Response | undefined | Promise<Response | undefined>;
  /** Fields merged into (or, when undefined, removed from) both metadata documents. */
  metadata: Record<string, unknown>;
  /** What the sign-in does when a browser reaches it (and auto-approve is on). */
  decision: "approve" | "deny";
  /** The codes handed out, with what they were bound to. */
  codes: Map<string, Authorization>;
  /**
   * Access tokens issued: with the RFC 8707 `resource` they are for, and the sign-in they came from
   * (RFC 9470: its `acr`, when the request's `acr_values` were honoured, and its time in seconds).
   */
  accessTokens: Map<
    string,
    { sub: string; clientId: string; scope: string; exp: number; resource?: string; acr?: string; authTime?: number }
  >;
  /** Whether an authorization request's `acr_values` are met (the first becomes the sign-in's `acr`), or ignored. */
  acr: "honour" | "ignore";
  /** Refresh tokens issued; `used` marks a rotated one (reusing it revokes the whole grant). */
  refreshTokens: Map<string, { sub: string; clientId: string; scope: string; grant: string; used: boolean }>;
  /** Tokens revoked at the revocation endpoint. */
  revoked: string[];
  rotateRefreshTokens: boolean;
  /** Whether refresh tokens are issued at all (for `offline_access`). */
  issueRefreshTokens: boolean;
  /** Seconds an access token lives (changeable per test). */
  accessTokenTtl: number;
  /** The device flow's switches: how many polls answer pending or slow_down, and how it ends. */
  device: {
    pending: number;
    slowDown: number;
    outcome: "approve" | "deny" | "expire";
    /** Seconds the device code lives, and the polling interval the server asks for (undefined: none). */
    expiresIn: number;
    interval?: number;
  };
  /** Device codes handed out. */
  deviceCodes: Map<
    string,
    {
      clientId: string;
      scope: string;
      userCode: string;
      expiresAt: number;
      approved: boolean;
      params?: URLSearchParams;
    }
  >;
  user: MockUser;
  /** More accounts, chosen by `login_hint`; tokens, ID tokens, introspection and UserInfo speak for the one that signed in. */
  users: MockUser[];
  clients: MockClient[];
  /** Requests to one endpoint ("token", "authorize", …). */
  calls(endpoint: string): RecordedRequest[];
  /**
   * Whether a subject token (or a JWT bearer assertion) is good, and for whom: its `sub`, or undefined
   * to refuse it with `invalid_grant`. Default: a JWT whose `aud` names this issuer and whose `exp` has
   * not passed (its signature is not checked: the interop suite checks signatures).
   */
  acceptSubject: (token: string, record: RecordedRequest) => string | undefined;
  /** The tool's own checks of the authorization URL before the browser opens (its preflight GETs), which `calls` leaves out. */
  preflights(): RecordedRequest[];
  /**
   * Reshapes each successful (200) token endpoint answer, after the mock has issued its tokens: gets
   * the JSON body and the request, returns the body to send instead, or a whole Response (headers too).
   */
  shapeToken?: (
    body: Record<string, unknown>,
    record: RecordedRequest,
  ) => Record<string, unknown> | Response | Promise<Record<string, unknown> | Response>;
}

/** What a grant's sign-in was: the resource asked for (RFC 8707), its acr and time in seconds (RFC 9470). */
interface SignIn {
  resource?: string;
  acr?: string;
  authTime?: number;
}

/** Builds a mock issuer; serve it with `serveMockIssuer` or pass its handler as `fetch`. */
export function createMockIssuer(options: MockOptions = {}): MockIssuer {
  const path = options.path ?? "";
  const now = options.now ?? (() => Date.now());
  const discovery = options.discovery ?? "both";
  const issParameter = options.issParameter ?? true;
  const paths: Partial<Record<MockEndpoint, string>> = options.paths ?? {};
  const dialect: MockDialect = options.dialect ?? {};
  /** The path of an endpoint, and its URL. */
  const ep = (name: MockEndpoint) => paths[name] ?? `${path}/${name}`;
  const at = (name: MockEndpoint) => `${new URL(mock.issuer).origin}${ep(name)}`;
  const keys = crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, true, ["sign", "verify"]);
  const kid = random(8);

  const mock: MockIssuer = {
    settled: keys,
    issuer: "http://127.0.0.1",
    requests: [],
    metadata: {},
    decision: "approve",
    codes: new Map(),
    accessTokens: new Map(),
    acr: "honour",
    refreshTokens: new Map(),
    revoked: [],
    rotateRefreshTokens: options.rotateRefreshTokens ?? false,
    issueRefreshTokens: true,
    device: { pending: 0, slowDown: 0, outcome: "approve", expiresIn: 600, interval: 5 },
    deviceCodes: new Map(),
    accessTokenTtl: options.accessTokenTtl ?? 3600,
    user: options.user ?? ALICE,
    users: options.users ?? [],
    clients: options.clients ?? [PUBLIC_CLIENT, CONFIDENTIAL_CLIENT],
    shapeToken: options.shapeToken,
    acceptSubject: (token) => {
      const claims = jwtClaims(token);
      const aud = claims?.aud;
      const audiences = Array.isArray(aud) ? aud : [aud];
      if (!claims || typeof claims.sub !== "string" || !audiences.includes(mock.issuer)) return undefined;
      return typeof claims.exp === "number" && claims.exp * 1000 > now() ? claims.sub : undefined;
    },
    calls: (endpoint) =>
      mock.requests.filter((r) =>
        r.path === (paths[endpoint as MockEndpoint] ?? `${path}/${endpoint}`) && !isPreflight(r)
      ),
    preflights: () => mock.requests.filter(isPreflight),
    handler: async (request) => {
      const url = new URL(request.url);
      const type = request.headers.get("content-type") ?? "";
      const form = request.method === "POST" && type.includes("application/x-www-form-urlencoded")
        ? Object.fromEntries(new URLSearchParams(await request.text()))
        : {};
      const sent = request.method === "POST" && type.includes("application/json")
        ? await request.json().catch(() => undefined)
        : undefined;
      const record: RecordedRequest = {
        method: request.method,
        path: url.pathname,
        query: Object.fromEntries(url.searchParams),
        form,
        headers: Object.fromEntries(request.headers),
        ...(sent && typeof sent === "object" ? { json: sent } : {}),
      };
      mock.requests.push(record);
      const intercepted = await mock.intercept?.(record, url, request);
      if (intercepted) return intercepted;
      const answer = await route(request, url, record);
      if (mock.shapeToken && url.pathname === `${path}/token` && answer.status === 200) {
        const shaped = await mock.shapeToken(await answer.json(), record);
        return shaped instanceof Response ? shaped : json(shaped);
      }
      return answer;
    },
  };

  function metadata(): Record<string, unknown> {
    const base: Record<string, unknown> = {
      issuer: mock.issuer,
      authorization_endpoint: at("authorize"),
      token_endpoint: at("token"),
      introspection_endpoint: at("introspect"),
      userinfo_endpoint: at("userinfo"),
      revocation_endpoint: at("revoke"),
      device_authorization_endpoint: at("device_authorization"),
      jwks_uri: at("keys"),
      response_types_supported: ["code"],
      grant_types_supported: [
        "authorization_code",
        "refresh_token",
        "urn:ietf:params:oauth:grant-type:device_code",
        "client_credentials",
        JWT_BEARER,
        TOKEN_EXCHANGE,
      ],
      code_challenge_methods_supported: ["S256"],
      token_endpoint_auth_methods_supported: ["client_secret_basic", "client_secret_post", "none"],
      introspection_endpoint_auth_methods_supported: ["client_secret_basic", "client_secret_post"],
      revocation_endpoint_auth_methods_supported: ["client_secret_basic", "client_secret_post", "none"],
      scopes_supported: ["openid", "profile", "email", "offline_access"],
      subject_types_supported: ["public"],
      id_token_signing_alg_values_supported: ["ES256"],
      authorization_response_iss_parameter_supported: issParameter,
    };
    if (options.par) {
      base.pushed_authorization_request_endpoint = `${mock.issuer}/par`;
      if (options.par === "required") base.require_pushed_authorization_requests = true;
    }
    if (options.registration) base.registration_endpoint = `${mock.issuer}/register`;
    if (options.clientIdMetadataDocuments) base.client_id_metadata_document_supported = true;
    for (const [key, value] of Object.entries(mock.metadata)) {
      if (value === undefined) delete base[key];
      else base[key] = value;
    }
    return base;
  }

  function authenticate(request: Request, form: Record<string, string>, record: RecordedRequest) {
    const header = request.headers.get("authorization");
    let id: string | undefined;
    let secret: string | undefined;
    if (header?.startsWith("Basic ")) {
      const [user, pass] = atob(header.slice(6)).split(":");
      id = decodeURIComponent(user);
      secret = decodeURIComponent(pass ?? "");
      record.clientAuth = "client_secret_basic";
    } else if (form.client_secret !== undefined) {
      id = form.client_id;
      secret = form.client_secret;
      record.clientAuth = "client_secret_post";
    } else {
      id = form.client_id;
      record.clientAuth = "none";
    }
    const client = mock.clients.find((c) => c.id === id);
    if (!client || client.auth !== record.clientAuth || (client.secret !== undefined && client.secret !== secret)) {
      return undefined;
    }
    return client;
  }

  /** The account a token was issued to: one of `users` by its sub, else `user`. */
  function userBySub(sub: string): MockUser {
    return mock.users.find((u) => u.sub === sub) ?? mock.user;
  }

  async function idToken(
    clientId: string,
    nonce: string | undefined,
    user = mock.user,
    signIn: SignIn = {},
  ): Promise<string> {
    const iat = Math.floor(now() / 1000);
    const header = b64url(JSON.stringify({ alg: "ES256", typ: "JWT", kid }));
    const payload = b64url(JSON.stringify({
      iss: mock.issuer,
      sub: user.sub,
      aud: clientId,
      iat,
      exp: iat + mock.accessTokenTtl,
      ...(nonce ? { nonce } : {}),
      ...(signIn.acr ? { acr: signIn.acr } : {}),
      ...(signIn.authTime ? { auth_time: signIn.authTime } : {}),
      preferred_username: user.username,
      email: user.email,
      name: user.name,
      ...dialect.idTokenClaims?.(mock),
    }));
    const signature = await crypto.subtle.sign(
      { name: "ECDSA", hash: "SHA-256" },
      (await keys).privateKey,
      encoder.encode(`${header}.${payload}`),
    );
    return `${header}.${payload}.${b64url(new Uint8Array(signature))}`;
  }

  function redirectWith(auth: Authorization, params: Record<string, string>): Response {
    const target = new URL(auth.redirectUri);
    for (const [key, value] of Object.entries(params)) target.searchParams.set(key, value);
    if (auth.state !== undefined) target.searchParams.set("state", auth.state);
    if (issParameter) target.searchParams.set("iss", mock.issuer);
    return new Response(null, { status: 302, headers: { location: target.href } });
  }

  function decide(auth: Authorization, decision: string): Response {
    if (decision !== "approve") {
      return redirectWith(auth, { error: "access_denied", error_description: "The user denied the request" });
    }
    const code = random();
    mock.codes.set(code, auth);
    return redirectWith(auth, { code });
  }

  const pending = new Map<string, Authorization>();
  /** What each grant's sign-in was, by grant: its resource (RFC 8707), acr and time (RFC 9470). */
  const signIns = new Map<string, SignIn>();
  /** Marks a refresh under rotation: it always hands out a new refresh token. */
  const ROTATION = new URLSearchParams();
  /** Pushed authorization requests (RFC 9126) by request_uri: the parameters and the client. */
  const pushed = new Map<string, { clientId: string; params: URLSearchParams; expiresAt: number }>();

  async function issueTokens(
    clientId: string,
    scope: string,
    grant: string,
    nonce: string | undefined,
    withRefresh: boolean,
    params?: URLSearchParams,
    user = mock.user,
    /** The refresh token's scope, when it is not the access token's (a narrowing refresh keeps the grant's). */
    refreshScope = scope,
  ): Promise<Response> {
    const accessToken = random(32);
    if (params && params !== ROTATION) {
      const asked = params.get("acr_values");
      signIns.set(grant, {
        resource: params.get("resource") ?? undefined,
        acr: asked && mock.acr === "honour" ? asked.split(" ")[0] : undefined,
        authTime: Math.floor(now() / 1000),
      });
    }
    const signIn = signIns.get(grant) ?? {};
    mock.accessTokens.set(accessToken, {
      sub: user.sub,
      clientId,
      scope,
      exp: Math.floor(now() / 1000) + mock.accessTokenTtl,
      ...signIn,
    });
    const scopes = scope.split(" ");
    let refreshToken: string | undefined;
    const offline = params === ROTATION || (dialect.refreshTokenWhen && params)
      ? params === ROTATION || dialect.refreshTokenWhen!(params!)
      : scopes.includes("offline_access");
    if (withRefresh && mock.issueRefreshTokens && offline) {
      refreshToken = random(32);
      mock.refreshTokens.set(refreshToken, { sub: user.sub, clientId, scope: refreshScope, grant, used: false });
    }
    return tokenAnswer({
      access_token: accessToken,
      ...(dialect.tokenType === null ? {} : { token_type: dialect.tokenType ?? "Bearer" }),
      ...(dialect.omitExpiresIn ? {} : { expires_in: mock.accessTokenTtl }),
      ...(dialect.omitScope ? {} : { scope: scopes.filter(Boolean).join(dialect.scopeSeparator ?? " ") }),
      ...(refreshToken ? { refresh_token: refreshToken } : {}),
      ...(scopes.includes("openid") ? { id_token: await idToken(clientId, nonce, user, signIn) } : {}),
    });
  }

  /** A token-endpoint answer in the dialect: form-encoded, or errors with HTTP 200. */
  function tokenAnswer(body: Record<string, unknown>, status = 200): Response {
    if (dialect.status200Errors) status = 200;
    if (dialect.formEncoded) {
      const form = new URLSearchParams(Object.entries(body).map(([k, v]) => [k, String(v)]));
      return new Response(form.toString(), {
        status,
        headers: { "content-type": "application/x-www-form-urlencoded; charset=utf-8" },
      });
    }
    return json(body, status);
  }

  function tokenError(error: string, description: string, status = 400): Response {
    return tokenAnswer({ error, error_description: description }, status);
  }

  function pollDevice(client: MockClient, deviceCode: string): Promise<Response> | Response {
    const entry = mock.deviceCodes.get(deviceCode);
    if (!entry || entry.clientId !== client.id) return tokenError("invalid_grant", "Unknown device code");
    if (now() >= entry.expiresAt || mock.device.outcome === "expire" && mock.device.pending <= 0) {
      return tokenError("expired_token", "The device code has expired");
    }
    if (mock.device.slowDown > 0) {
      mock.device.slowDown--;
      return tokenError("slow_down", "Polling too fast");
    }
    if (mock.device.pending > 0 && !entry.approved) {
      mock.device.pending--;
      return tokenError("authorization_pending", "The user has not answered yet");
    }
    if (mock.device.outcome === "deny") return tokenError("access_denied", "The user denied the request");
    mock.deviceCodes.delete(deviceCode);
    return issueTokens(client.id, entry.scope, random(), undefined, true, entry.params);
  }

  /** RFC 7591 §3: a native client with loopback redirect URIs is registered; anything else is refused. */
  function register(record: RecordedRequest): Response {
    if (options.registration === "refuse") {
      return oauthError("invalid_client_metadata", "Registration is closed to new clients");
    }
    const body = record.json ?? {};
    const uris = Array.isArray(body.redirect_uris) ? body.redirect_uris.filter((u) => typeof u === "string") : [];
    const loopback = uris.length > 0 && uris.every((u: string) => {
      const url = URL.parse(u);
      return url?.protocol === "http:" && ["127.0.0.1", "[::1]", "localhost"].includes(url.hostname);
    });
    if (!loopback) return oauthError("invalid_redirect_uri", "Only loopback redirect URIs are accepted");
    const auth =
      (options.registrationIssuesSecret
        ? "client_secret_basic"
        : body.token_endpoint_auth_method ?? "client_secret_basic") as MockClientAuth;
    const client: MockClient = {
      id: `dyn-${random(9)}`,
      auth,
      redirectUris: uris,
      name: typeof body.client_name === "string" ? body.client_name : undefined,
      ...(auth === "none" ? {} : { secret: random(24) }),
    };
    mock.clients.push(client);
    return json({
      client_id: client.id,
      client_id_issued_at: Math.floor(now() / 1000),
      ...(client.secret ? { client_secret: client.secret, client_secret_expires_at: 0 } : {}),
      redirect_uris: uris,
      token_endpoint_auth_method: auth,
      grant_types: body.grant_types,
      response_types: body.response_types,
      client_name: body.client_name,
      application_type: body.application_type,
    }, 201);
  }

  /** A Client ID Metadata Document's client: the document at the client_id URL, naming that URL as its client_id. */
  async function clientDocument(id: string | null): Promise<MockClient | undefined> {
    const url = id && options.clientIdMetadataDocuments ? URL.parse(id) : null;
    if (!url || (url.protocol !== "https:" && url.hostname !== "127.0.0.1")) return undefined;
    const response = await fetch(url, { redirect: "manual" });
    const document = response.ok ? await response.json().catch(() => undefined) : await response.body?.cancel();
    if (!document || document.client_id !== id || !Array.isArray(document.redirect_uris)) return undefined;
    const client: MockClient = {
      id: id!,
      auth: "none",
      redirectUris: document.redirect_uris,
      name: document.client_name,
    };
    mock.clients.push(client);
    return client;
  }

  function revokeGrant(grant: string): void {
    for (const [token, info] of mock.refreshTokens) if (info.grant === grant) mock.refreshTokens.delete(token);
  }

  function refresh(client: MockClient, token: string, narrower?: string): Promise<Response> | Response {
    const info = mock.refreshTokens.get(token);
    if (!info || info.clientId !== client.id) return tokenError("invalid_grant", "The refresh token is invalid");
    if (info.used) {
      revokeGrant(info.grant); // reuse of a rotated token: RFC 9700 §4.14.2
      return tokenError("invalid_grant", "The refresh token was already used; the grant is revoked");
    }
    // RFC 6749 §6: a narrower scope for the access token; the refresh token keeps the grant's.
    const granted = info.scope.split(" ");
    const scope = narrower ?? info.scope;
    const beyond = scope.split(" ").filter((s) => s && !granted.includes(s));
    if (beyond.length > 0) return tokenError("invalid_scope", `The grant does not include ${beyond.join(" ")}`);
    const user = userBySub(info.sub);
    if (mock.rotateRefreshTokens) {
      info.used = true;
      return issueTokens(client.id, scope, info.grant, undefined, true, ROTATION, user, info.scope);
    }
    return issueTokens(client.id, scope, info.grant, undefined, false, undefined, user);
  }

  /** Client credentials (RFC 6749 §4.4): only a client that authenticated with a secret. */
  function clientCredentials(client: MockClient, record: RecordedRequest): Promise<Response> | Response {
    if (!client.secret) return tokenError("unauthorized_client", "A public client cannot use client_credentials");
    const self: MockUser = { sub: client.id, username: client.id, email: "", name: client.id };
    return issueTokens(client.id, record.form.scope ?? "", random(), undefined, false, undefined, self);
  }

  /**
   * A JWT bearer assertion (RFC 7523 §2.1) or a token exchange (RFC 8693 §2.1): the subject token
   * (and the actor's) as `acceptSubject` judges it; a token exchange answers with `issued_token_type`
   * and gives a refresh token when `offline_access` is asked for.
   */
  async function grantForSubject(client: MockClient, record: RecordedRequest): Promise<Response> {
    const form = record.form;
    const exchange = form.grant_type === TOKEN_EXCHANGE;
    const token = exchange ? form.subject_token : form.assertion;
    if (!token) return tokenError("invalid_request", exchange ? "subject_token is required" : "assertion is required");
    if (exchange && !form.subject_token_type) return tokenError("invalid_request", "subject_token_type is required");
    if (exchange && form.actor_token !== undefined && !form.actor_token_type) {
      return tokenError("invalid_request", "actor_token_type is required with actor_token");
    }
    const sub = mock.acceptSubject(token, record);
    if (!sub) return tokenError("invalid_grant", "The subject token is not accepted");
    if (form.actor_token !== undefined && !mock.acceptSubject(form.actor_token, record)) {
      return tokenError("invalid_grant", "The actor token is not accepted");
    }
    const user: MockUser = { sub, username: sub, email: "", name: sub };
    const scope = form.scope ?? "";
    const answer = await issueTokens(client.id, scope, random(), undefined, exchange, undefined, user);
    if (!exchange || answer.status !== 200) return answer;
    const body = await answer.json();
    return json({ ...body, issued_token_type: ACCESS_TOKEN_TYPE });
  }

  async function route(request: Request, url: URL, record: RecordedRequest): Promise<Response> {
    const p = url.pathname;
    const q = url.searchParams;
    if (
      discovery !== "none" && (
        (p === `/.well-known/oauth-authorization-server${path}` && discovery !== "oidc") ||
        (p === `${path}/.well-known/openid-configuration` && discovery !== "oauth2")
      )
    ) {
      return json(metadata());
    }
    if (p === ep("keys")) {
      return json({
        keys: [{ ...await crypto.subtle.exportKey("jwk", (await keys).publicKey), kid, use: "sig", alg: "ES256" }],
      });
    }
    if (p === `${path}/par` && request.method === "POST" && options.par) {
      const client = authenticate(request, record.form, record);
      if (!client) return oauthError("invalid_client", "Client authentication failed", 401);
      if (!client.redirectUris.some((r) => redirectMatches(r, record.form.redirect_uri ?? ""))) {
        return oauthError("invalid_redirect_uri", "The redirect_uri is not registered for this client");
      }
      const supported = metadata().scopes_supported as string[];
      const unknown = (record.form.scope ?? "").split(" ").find((scope) => scope && !supported.includes(scope));
      if (unknown) return oauthError("invalid_scope", `The scope "${unknown}" is not known`);
      const requestUri = `urn:ietf:params:oauth:request_uri:${random(16)}`;
      const params = new URLSearchParams(record.form);
      params.delete("client_secret");
      pushed.set(requestUri, { clientId: client.id, params, expiresAt: now() + 60_000 });
      return json({ request_uri: requestUri, expires_in: 60 }, 201);
    }
    if (p === `${path}/register` && request.method === "POST" && options.registration) {
      return register(record);
    }
    if (p === ep("authorize") && request.method === "GET") {
      let q = url.searchParams;
      const requestUri = q.get("request_uri");
      if (requestUri !== null) {
        const entry = pushed.get(requestUri);
        if (!entry || entry.clientId !== q.get("client_id") || now() >= entry.expiresAt) {
          return html("<h1>Sign-in failed</h1><p>The request_uri is unknown or has expired.</p>", 400);
        }
        pushed.delete(requestUri); // single use
        q = entry.params;
      } else if (options.par === "required") {
        return html("<h1>Sign-in failed</h1><p>This server requires pushed authorization requests.</p>", 400);
      }
      const client = mock.clients.find((c) => c.id === q.get("client_id")) ?? await clientDocument(q.get("client_id"));
      if (!client) return html("<h1>Sign-in failed</h1><p>Unknown client: the client_id is not registered.</p>", 400);
      const redirectUri = q.get("redirect_uri") ?? "";
      if (!client.redirectUris.some((r) => redirectMatches(r, redirectUri, dialect.localhostAnyPort))) {
        return html("<h1>Sign-in failed</h1><p>The redirect_uri is not registered for this client.</p>", 400);
      }
      const auth: Authorization = {
        clientId: client.id,
        redirectUri,
        challenge: q.get("code_challenge") ?? "",
        scope: q.get("scope") ?? "",
        nonce: q.get("nonce") ?? undefined,
        state: q.get("state") ?? undefined,
        params: new URLSearchParams(q),
        user: mock.users.find((u) => [u.username, u.email, u.sub].includes(q.get("login_hint") ?? "")),
      };
      if (q.get("response_type") !== "code") return redirectWith(auth, { error: "unsupported_response_type" });
      if (q.get("code_challenge_method") !== "S256" || !auth.challenge) {
        return redirectWith(auth, { error: "invalid_request", error_description: "PKCE with S256 is required" });
      }
      if (options.autoApprove ?? true) return decide(auth, mock.decision);
      const txn = random(12);
      pending.set(txn, auth);
      return html(`<h1>Sign in to ${client.name ?? client.id} as ${mock.user.username}?</h1>
<p>This is the demo's mock issuer at ${new URL(mock.issuer).host}: no password is asked.</p>
<form method="post" action="${ep("authorize")}/decision" data-mock-signin>
<input type="hidden" name="txn" value="${txn}">
<button name="decision" value="approve">Approve</button> <button name="decision" value="deny">Deny</button>
</form>`);
    }
    if (p === `${ep("authorize")}/decision` && request.method === "POST") {
      const auth = pending.get(record.form.txn ?? "");
      if (!auth) return html("<h1>Unknown or used sign-in</h1>", 400);
      pending.delete(record.form.txn);
      return decide(auth, record.form.decision ?? "deny");
    }
    if (p === ep("token") && request.method === "POST") {
      const client = authenticate(request, record.form, record);
      if (!client) return tokenError("invalid_client", "Client authentication failed", 401);
      if (record.form.grant_type === "refresh_token") {
        return refresh(client, record.form.refresh_token ?? "", record.form.scope);
      }
      if (record.form.grant_type === "client_credentials") return clientCredentials(client, record);
      if (record.form.grant_type === JWT_BEARER || record.form.grant_type === TOKEN_EXCHANGE) {
        return await grantForSubject(client, record);
      }
      if (record.form.grant_type === "urn:ietf:params:oauth:grant-type:device_code") {
        return pollDevice(client, record.form.device_code ?? "");
      }
      if (record.form.grant_type !== "authorization_code") {
        return tokenError("unsupported_grant_type", "Only authorization_code and refresh_token are supported");
      }
      const auth = mock.codes.get(record.form.code ?? "");
      mock.codes.delete(record.form.code ?? "");
      if (!auth || auth.clientId !== client.id) {
        return tokenError("invalid_grant", "The code is invalid or was already used");
      }
      if (auth.redirectUri !== record.form.redirect_uri) {
        return tokenError("invalid_grant", "The redirect_uri does not match");
      }
      if (await s256(record.form.code_verifier ?? "") !== auth.challenge) {
        return tokenError("invalid_grant", "PKCE verification failed");
      }
      return issueTokens(client.id, auth.scope, random(), auth.nonce, true, auth.params, auth.user);
    }
    if (p === ep("introspect") && request.method === "POST") {
      const client = authenticate(request, record.form, record);
      if (!client || client.auth === "none") {
        return oauthError("invalid_client", "Introspection needs client authentication", 401);
      }
      const token = mock.accessTokens.get(record.form.token ?? "");
      if (!token || token.exp * 1000 <= now()) return json({ active: false });
      return json({
        active: true,
        username: userBySub(token.sub).username,
        sub: token.sub,
        client_id: token.clientId,
        scope: token.scope,
        exp: token.exp,
        token_type: "Bearer",
      });
    }
    if (p === ep("device_authorization") && request.method === "POST") {
      const client = authenticate(request, record.form, record);
      if (!client) return oauthError("invalid_client", "Client authentication failed", 401);
      const deviceCode = random(24);
      const letters = Array.from(crypto.getRandomValues(new Uint8Array(8)), (b) => "BCDFGHJKLMNPQRSTVWXZ"[b % 20]);
      const userCode = `${letters.slice(0, 4).join("")}-${letters.slice(4).join("")}`;
      mock.deviceCodes.set(deviceCode, {
        clientId: client.id,
        scope: record.form.scope ?? "",
        userCode,
        expiresAt: now() + mock.device.expiresIn * 1000,
        approved: false,
        params: new URLSearchParams(record.form),
      });
      return json({
        device_code: deviceCode,
        user_code: userCode,
        [dialect.verificationUriName ?? "verification_uri"]: at("device"),
        verification_uri_complete: `${at("device")}?user_code=${userCode}`,
        expires_in: mock.device.expiresIn,
        ...(mock.device.interval === undefined ? {} : { interval: mock.device.interval }),
      });
    }
    if (p === ep("device") && request.method === "GET") {
      return html(`<h1>Mock issuer: device sign-in</h1>
<form method="post" action="${ep("device")}"><label>Code <input name="user_code" value="${
        (q.get("user_code") ?? "").replace(/[^A-Z0-9-]/g, "")
      }"></label> <button>Approve</button></form>`);
    }
    if (p === ep("device") && request.method === "POST") {
      const entry = [...mock.deviceCodes.values()].find((d) => d.userCode === record.form.user_code);
      if (!entry) return html("<h1>Unknown code</h1>", 400);
      entry.approved = true;
      return html("<h1>Approved: return to your device</h1>");
    }
    if (p === ep("revoke") && request.method === "POST") {
      const client = authenticate(request, record.form, record);
      if (!client) return oauthError("invalid_client", "Client authentication failed", 401);
      const token = record.form.token ?? "";
      mock.revoked.push(token);
      const refresh = mock.refreshTokens.get(token);
      if (refresh) revokeGrant(refresh.grant);
      mock.accessTokens.delete(token);
      return new Response(null, { status: 200 });
    }
    if (p === ep("userinfo")) {
      const token = mock.accessTokens.get(request.headers.get("authorization")?.replace(/^Bearer /, "") ?? "");
      if (!token) {
        return new Response(null, { status: 401, headers: { "www-authenticate": 'Bearer error="invalid_token"' } });
      }
      const user = userBySub(token.sub);
      return json({
        sub: token.sub,
        preferred_username: user.username,
        email: user.email,
        name: user.name,
      });
    }
    if (options.whoAmI && p === options.whoAmI.path && request.method === "GET") {
      const token = mock.accessTokens.get(request.headers.get("authorization")?.replace(/^Bearer /i, "") ?? "");
      if (!token) return json({ message: "Bad credentials" }, 401);
      return json(options.whoAmI.body(mock.user));
    }
    return json({ error: "not_found" }, 404);
  }

  return mock;
}

export interface ServedMock extends MockIssuer {
  port: number;
  close(): Promise<void>;
}

/** Serves a mock issuer on 127.0.0.1 with an ephemeral port. */
export function serveMockIssuer(options: MockOptions = {}): ServedMock {
  const mock = createMockIssuer(options);
  const controller = new AbortController();
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, signal: controller.signal, onListen() {} }, mock.handler);
  mock.issuer = `http://127.0.0.1:${server.addr.port}${options.path ?? ""}`;
  return Object.assign(mock, {
    port: server.addr.port,
    async close() {
      controller.abort();
      await server.finished;
      await mock.settled;
    },
  });
}

// ── A scripted browser ──────────────────────────────────────────────────────────────────────────

export interface BrowserVisit {
  /** Every URL the browser loaded, in order. */
  visited: string[];
  status: number;
  body: string;
  headers: Headers;
}

/**
 * Plays the person's browser: loads `url`, follows redirects, answers the mock's sign-in page with
 * `decision`, and returns the last page (the tool's callback page, normally).
 */
export async function scriptedBrowser(url: string, decision: "approve" | "deny" = "approve"): Promise<BrowserVisit> {
  const visited: string[] = [];
  let next: { url: string; init?: RequestInit } = { url };
  for (let hop = 0; hop < 20; hop++) {
    visited.push(next.url);
    const response = await fetch(next.url, { ...next.init, redirect: "manual" });
    const location = response.headers.get("location");
    if (response.status >= 300 && response.status < 400 && location) {
      await response.body?.cancel();
      next = { url: new URL(location, next.url).href };
      continue;
    }
    const body = await response.text();
    const form = body.match(/<form method="post" action="([^"]+)" data-mock-signin>[\s\S]*?name="txn" value="([^"]+)"/);
    if (form) {
      next = {
        url: new URL(form[1], next.url).href,
        init: { method: "POST", body: new URLSearchParams({ txn: form[2], decision }) },
      };
      continue;
    }
    return { visited, status: response.status, body, headers: response.headers };
  }
  throw new Error("The scripted browser followed too many redirects");
}

// ── Demo ────────────────────────────────────────────────────────────────────────────────────────

/** `deno task demo`: a real login against the mock, in a real browser where one can be opened. */
async function demo(): Promise<number> {
  const mock = serveMockIssuer({
    autoApprove: false,
    user: { sub: "demo-1", username: "demo-user", email: "demo-user@example.com", name: "Demo User" },
  });
  mock.clients.push({ id: "demo", name: "the demo app", auth: "none", redirectUris: ["http://127.0.0.1/callback"] });
  const deps = realDeps();
  const cache = await Deno.makeTempDir({ prefix: "oauth-login-demo-" });
  deps.storage = fileStorage(cache); // the demo's tokens never mix with real ones
  const env = (name: string) => Deno.env.get(name);
  const headless = Deno.build.os === "linux" && !env("BROWSER") && !env("DISPLAY") && !env("WAYLAND_DISPLAY");
  if (headless) {
    deps.stderr(
      "demo: no display here, so a scripted browser signs in (it follows the same redirects a browser would)\n",
    );
  }
  deps.openUrl = async (url) => {
    if (!headless) {
      try {
        return await openWithSystemBrowser(url);
      } catch (error) {
        deps.stderr(
          `demo: no browser could be opened (${(error as Error).message}); signing in with a scripted browser\n`,
        );
      }
    }
    scriptedBrowser(url).catch((error) => deps.stderr(`demo: the scripted browser failed: ${error}\n`));
  };
  deps.stderr(`demo: a mock issuer is running at ${mock.issuer}\n`);
  try {
    return await loginMain([
      "--issuer",
      mock.issuer,
      "--client-id",
      "demo",
      "--flow",
      "browser",
      "--timeout",
      "120",
      "--token-storage",
      "file", // the demo's tokens are removed at its end: no keychain item is left behind
      ...Deno.args,
    ], deps);
  } finally {
    await mock.close();
    await Deno.remove(cache, { recursive: true });
  }
}

if (import.meta.main) Deno.exit(await demo());
