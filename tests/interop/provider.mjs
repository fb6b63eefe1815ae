// A real, OpenID-certified authorization server (oidc-provider 8) for oauth-login's interop tests.
//
//   node tests/interop/provider.mjs [--confidential-redirect URL] [--access-token-ttl SECONDS]
//                                   [--device-interval SECONDS] [--clock] [--dpop] [--resources]
//                                   [--registration] [--api RESOURCE]
//
// With --clock, `POST /__clock` with a body of N moves the provider's clock (Date.now, which all of
// oidc-provider's lifetimes read) N seconds ahead of the real one (0 puts it back): a test can make
// two minutes pass for a pushed request's 60-second lifetime without sleeping.
//
// Listens on 127.0.0.1 on a port the OS picks, prints one JSON line on stdout once it is listening:
//   {"issuer":"http://127.0.0.1:PORT","port":PORT,"clients":{...},"account":{...}}
// and exits when its stdin closes, on SIGTERM or on SIGINT. Development only: plain http on
// loopback, the built-in sign-in and consent pages (devInteractions), an in-memory store.
import { generateKeyPairSync, randomBytes } from "node:crypto";
import { createServer } from "node:http";
import { parseArgs } from "node:util";

// Loaded dynamically so that `deno check` (which sees this Node script) does not need the package.
const { default: Provider, errors } = await import("oidc-provider");

const { values: args } = parseArgs({
  options: {
    "confidential-redirect": {
      type: "string",
      default: "http://127.0.0.1:8976/cb",
    },
    "access-token-ttl": { type: "string", default: "3600" },
    "device-interval": { type: "string", default: "1" },
    // DPoP (RFC 9449) with server nonces required at every endpoint, and the resource servers of
    // RFC 8707 (https://api-one.example/ and https://api-two.example/, JWT access tokens).
    dpop: { type: "boolean", default: false },
    clock: { type: "boolean", default: false },
    resources: { type: "boolean", default: false },
    // Open dynamic client registration (RFC 7591), as servers that API metadata names often have.
    registration: { type: "boolean", default: false },
    // The resource identifier of the tests' own API (RFC 8707 / RFC 9728): its tokens are JWTs for it,
    // with the scopes mcp:read and mcp:admin and the sign-in's auth_time (for RFC 9470 step-up).
    api: { type: "string" },
  },
  strict: true,
});
function seconds(flag) {
  const value = Number(args[flag]);
  if (!Number.isInteger(value) || value < 1) {
    console.error(
      `provider: --${flag} must be a positive whole number of seconds`,
    );
    process.exit(2);
  }
  return value;
}
const accessTokenTtl = seconds("access-token-ttl");
const deviceInterval = seconds("device-interval");

/** The clients the tests use. The public one may use any loopback port (RFC 8252 §7.3). */
export const CLIENTS = {
  public: { id: "interop-public" },
  confidential: {
    id: "interop-confidential",
    secret: "interop-confidential-secret-0123456789",
  },
};

/**
 * The one person who signs in. devInteractions accepts any login name and makes it the account id
 * (the `sub`); every account gets these profile claims, so the tests type `sub` as the login name.
 */
export const ACCOUNT = {
  sub: "248289761001",
  preferred_username: "alice",
  email: "alice@example.com",
  email_verified: true,
  name: "Alice Example",
};

const DEVICE_CODE_GRANT = "urn:ietf:params:oauth:grant-type:device_code";

/**
 * The clients of the DPoP and JWT client authentication tests: one that must use DPoP, one that
 * signs its assertions with a key made here (the private JWK is printed for the test to hand to the
 * CLI; only the public half is registered), one with client_secret_jwt.
 */
const { privateKey: clientPrivateKey, publicKey: clientPublicKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
export const JWT_CLIENTS = {
  dpop: { id: "interop-dpop" },
  privateKeyJwt: {
    id: "interop-pkjwt",
    jwk: { ...clientPrivateKey.export({ format: "jwk" }), kid: "cli-1", alg: "ES256" },
  },
  clientSecretJwt: { id: "interop-csjwt", secret: "interop-client-secret-jwt-0123456789abcdef" },
};
export const RESOURCES = ["https://api-one.example/", "https://api-two.example/"];

function jwtClients() {
  const common = {
    application_type: "native",
    redirect_uris: ["http://127.0.0.1/callback"],
    response_types: ["code"],
    grant_types: ["authorization_code", "refresh_token", DEVICE_CODE_GRANT],
  };
  return [
    { ...common, client_id: JWT_CLIENTS.dpop.id, token_endpoint_auth_method: "none", dpop_bound_access_tokens: true },
    {
      ...common,
      client_id: JWT_CLIENTS.privateKeyJwt.id,
      token_endpoint_auth_method: "private_key_jwt",
      token_endpoint_auth_signing_alg: "ES256",
      jwks: { keys: [{ ...clientPublicKey.export({ format: "jwk" }), kid: "cli-1", alg: "ES256", use: "sig" }] },
    },
    {
      ...common,
      client_id: JWT_CLIENTS.clientSecretJwt.id,
      client_secret: JWT_CLIENTS.clientSecretJwt.secret,
      token_endpoint_auth_method: "client_secret_jwt",
    },
  ];
}

function configuration() {
  // ES256: a P-256 key is generated in a millisecond, an RSA key takes a few hundred.
  const { privateKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
  return {
    clients: [
      {
        client_id: CLIENTS.public.id,
        client_name: "oauth-login interop (public)",
        application_type: "native",
        token_endpoint_auth_method: "none",
        redirect_uris: ["http://127.0.0.1/callback"],
        response_types: ["code"],
        grant_types: ["authorization_code", "refresh_token", DEVICE_CODE_GRANT],
      },
      {
        client_id: CLIENTS.confidential.id,
        client_secret: CLIENTS.confidential.secret,
        client_name: "oauth-login interop (confidential)",
        application_type: "web",
        token_endpoint_auth_method: "client_secret_basic",
        redirect_uris: [args["confidential-redirect"]],
        response_types: ["code"],
        grant_types: ["authorization_code", "refresh_token", DEVICE_CODE_GRANT],
      },
      ...jwtClients(),
    ],
    findAccount(_ctx, id) {
      return {
        accountId: id,
        claims() {
          return { ...ACCOUNT, sub: id };
        },
      };
    },
    claims: {
      openid: ["sub"],
      email: ["email", "email_verified"],
      profile: ["name", "preferred_username"],
    },
    scopes: ["openid", "offline_access", "email", "profile"],
    pkce: { methods: ["S256"], required: () => true },
    cookies: { keys: [randomBytes(32).toString("base64url")] },
    jwks: {
      keys: [{
        ...privateKey.export({ format: "jwk" }),
        use: "sig",
        alg: "ES256",
        kid: "interop",
      }],
    },
    clientDefaults: {
      grant_types: ["authorization_code"],
      id_token_signed_response_alg: "ES256",
      response_types: ["code"],
      token_endpoint_auth_method: "client_secret_basic",
    },
    enabledJWA: { idTokenSigningAlgValues: ["ES256"] },
    clientBasedCORS: () => false,
    features: {
      devInteractions: { enabled: true },
      introspection: { enabled: true },
      revocation: { enabled: true },
      deviceFlow: { enabled: true },
      userinfo: { enabled: true },
      rpInitiatedLogout: { enabled: false },
      // Opaque access tokens for UserInfo, with no resource indicator required.
      resourceIndicators: { enabled: false },
      ...(args.dpop ? { dPoP: { enabled: true, nonceSecret: randomBytes(32), requireNonce: () => true } } : {}),
      ...(args.resources
        ? {
          resourceIndicators: {
            enabled: true,
            defaultResource: () => undefined,
            useGrantedResource: () => true,
            getResourceServerInfo(_ctx, resource) {
              if (!RESOURCES.includes(resource)) throw new errors.InvalidTarget();
              return { scope: "api:read", audience: resource, accessTokenFormat: "jwt", accessTokenTTL: 3600 };
            },
          },
        }
        : {}),
      ...(args.registration ? { registration: { enabled: true, initialAccessToken: false } } : {}),
      ...(args.api
        ? {
          resourceIndicators: {
            enabled: true,
            defaultResource: () => undefined,
            useGrantedResource: () => true,
            getResourceServerInfo(_ctx, resource) {
              if (resource !== args.api) throw new errors.InvalidTarget();
              return {
                scope: "mcp:read mcp:admin",
                audience: resource,
                accessTokenFormat: "jwt",
                accessTokenTTL: accessTokenTtl,
              };
            },
          },
        }
        : {}),
    },
    // The sign-in's time in the API's tokens, so that the API can ask for a fresh one (RFC 9470).
    ...(args.api
      ? {
        extraTokenClaims(ctx) {
          const { AuthorizationCode, RefreshToken, DeviceCode } = ctx.oidc.entities;
          const authTime = (AuthorizationCode ?? RefreshToken ?? DeviceCode)?.authTime;
          return authTime ? { auth_time: authTime } : undefined;
        },
      }
      : {}),
    // Refresh tokens only with offline_access, which oidc-provider grants only with prompt=consent
    // (OpenID Connect Core §11); every use rotates the refresh token.
    issueRefreshToken: (_ctx, client, code) =>
      client.grantTypeAllowed("refresh_token") &&
      code.scopes.has("offline_access"),
    rotateRefreshToken: true,
    ttl: {
      AccessToken: () => accessTokenTtl,
      AuthorizationCode: 60,
      DeviceCode: 600,
      Grant: 3600,
      IdToken: 3600,
      Interaction: 600,
      RefreshToken: 86400,
      Session: 3600,
    },
  };
}

/** The provider's clock: the real one plus an offset that `POST /__clock` sets (with --clock only). */
const realNow = Date.now;
let clockOffsetMs = 0;
if (args.clock) Date.now = () => realNow() + clockOffsetMs;

function moveClock(req, res) {
  let body = "";
  req.on("data", (chunk) => body += chunk);
  req.on("end", () => {
    clockOffsetMs = Number(body) * 1000 || 0;
    res.writeHead(204).end();
  });
}

const server = createServer();
server.listen(0, "127.0.0.1", () => {
  const { port } = server.address();
  const issuer = `http://127.0.0.1:${port}`;
  const provider = new Provider(issuer, configuration());
  // Errors the tests may want to see, on stderr (the test prints it when something fails).
  for (
    const event of [
      "server_error",
      "grant.error",
      "authorization.error",
      "introspection.error",
    ]
  ) {
    provider.on(event, (...details) => {
      const error = details.find((d) => d instanceof Error);
      console.error(
        `provider: ${event}: ${error?.message ?? ""} ${error?.error_description ?? ""}`,
      );
    });
  }
  // oidc-provider sends no `interval`, so RFC 8628 clients poll every 5 s; a real server often
  // says how often to poll, and a short one keeps the device-flow tests quick.
  provider.use(async (ctx, next) => {
    await next();
    if (
      ctx.method === "POST" && ctx.path === "/device/auth" &&
      ctx.status === 200 && ctx.body?.device_code
    ) {
      ctx.body.interval = deviceInterval;
    }
  });
  const handle = provider.callback();
  server.on("request", (req, res) => {
    if (args.clock && req.method === "POST" && req.url === "/__clock") return moveClock(req, res);
    handle(req, res);
  });
  process.stdout.write(
    JSON.stringify({ issuer, port, clients: CLIENTS, account: ACCOUNT, jwtClients: JWT_CLIENTS }) + "\n",
  );
});

// oidc-provider prints notes with console.log; a reader that went away must not end the server.
process.stdout.on("error", () => {});

function stop() {
  server.closeAllConnections?.();
  server.close();
  process.exit(0);
}
process.stdin.on("end", stop);
process.stdin.on("error", stop);
process.stdin.resume();
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
