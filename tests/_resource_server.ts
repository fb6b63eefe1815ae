/**
 * A protected resource of our own for the tests of issue 20 (an API, or an MCP server, that says where to
 * sign in): served on 127.0.0.1 with an ephemeral port, it answers a request without a valid token with
 * 401 and a `WWW-Authenticate: Bearer` challenge naming its metadata (`resource_metadata`, RFC 9728 §5.1),
 * serves that metadata at both well-known forms (path inserted, and the root: §3.1), checks each token's
 * audience (RFC 8707), and on chosen paths answers 403 `insufficient_scope` (RFC 6750 §3.1) or 401
 * `insufficient_user_authentication` (RFC 9470). It records every request. Nothing here is for production.
 *
 * @module
 */

/** What a token grants, as the authorization server says (the mock's records, or a JWT's claims). */
export interface TokenInfo {
  /** The granted scope, space-separated. */
  scope: string;
  /** The token's audience: it must name this resource (RFC 8707). */
  audience?: string | string[];
  /** The sign-in's authentication context class (RFC 9470). */
  acr?: string;
  /** When the person signed in, in seconds since the epoch. */
  authTime?: number;
  /** Who it is for. */
  sub?: string;
}

/** What a path needs beyond a valid token. */
export interface PathRule {
  /** A scope the token must hold: else 403 insufficient_scope naming it. */
  scope?: string;
  /** An acr the sign-in must have had: else 401 insufficient_user_authentication with acr_values. */
  acr?: string;
  /** The sign-in must date from this time (seconds) or later: else 401 insufficient_user_authentication with max_age 0. */
  freshSince?: number;
}

export interface ResourceServerOptions {
  /** The API's path (default "/mcp"). */
  path?: string;
  /** The resource its metadata names, from its origin (default: the origin and the path). */
  resource?: (origin: string) => string;
  /** The authorization servers its metadata names (changeable later on the server). */
  authorizationServers?: string[];
  /** The metadata's scopes_supported. */
  scopesSupported?: string[];
  /**
   * How a client finds the metadata: named in the challenge, and served at both well-known forms
   * ("header", the default); only at the well-known URL with the path inserted ("path"); only at the
   * root ("root"); nowhere ("none").
   */
  discovery?: "header" | "path" | "root" | "none";
  /** The `scope` of the 401 challenge to a request without a token. */
  challengeScope?: string;
  /** The `resource_metadata` the challenge names, from the origin (default: the path-inserted well-known URL). */
  metadataUrl?: (origin: string) => string;
  /** Paths (below the origin) that need more than a valid token. */
  rules?: Record<string, PathRule>;
  /** What a token grants, or undefined for a token the server does not know. */
  verify: (token: string) => TokenInfo | undefined | Promise<TokenInfo | undefined>;
}

/** A request the resource server received. */
export interface ResourceRequest {
  method: string;
  path: string;
  authorization?: string;
  body: string;
}

export interface ResourceServer {
  /** The API's URL: origin and path. */
  url: string;
  origin: string;
  /** The resource identifier its metadata names. */
  resource: string;
  requests: ResourceRequest[];
  /** What its metadata names, changeable by the test. */
  authorizationServers: string[];
  rules: Record<string, PathRule>;
  close(): Promise<void>;
}

function json(body: unknown, status = 200, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json", ...headers } });
}

/** Serves the stand-in API on 127.0.0.1 with an ephemeral port. */
export function serveResourceServer(options: ResourceServerOptions): ResourceServer {
  const path = options.path ?? "/mcp";
  const discovery = options.discovery ?? "header";
  const controller = new AbortController();
  const state = {
    requests: [] as ResourceRequest[],
    authorizationServers: options.authorizationServers ?? [],
    rules: options.rules ?? {},
  };
  let origin = "";
  let resource = "";
  const metadata = () => ({
    resource,
    authorization_servers: state.authorizationServers,
    ...(options.scopesSupported ? { scopes_supported: options.scopesSupported } : {}),
    bearer_methods_supported: ["header"],
    resource_name: "the stand-in API",
  });
  const challenge = (fields: Record<string, string>) =>
    "Bearer " + Object.entries(fields).map(([k, v]) => `${k}="${v.replaceAll('"', '\\"')}"`).join(", ");

  const handler = async (request: Request): Promise<Response> => {
    const url = new URL(request.url);
    const body = await request.text();
    const authorization = request.headers.get("authorization") ?? undefined;
    state.requests.push({ method: request.method, path: url.pathname, authorization, body });
    const wellKnown = "/.well-known/oauth-protected-resource";
    if (url.pathname === `${wellKnown}${path}`) {
      return discovery === "header" || discovery === "path" ? json(metadata()) : json({ error: "not_found" }, 404);
    }
    if (url.pathname === wellKnown) {
      return discovery === "header" || discovery === "root" ? json(metadata()) : json({ error: "not_found" }, 404);
    }
    if (!url.pathname.startsWith(path)) return json({ error: "not_found" }, 404);
    const token = authorization?.match(/^Bearer ([\w.~+/-]+=*)$/)?.[1];
    const info = token === undefined ? undefined : await options.verify(token);
    const audience = [info?.audience ?? []].flat();
    if (!info || !audience.includes(resource)) {
      return json({ error: "unauthorized" }, 401, {
        "www-authenticate": challenge({
          ...(token === undefined ? {} : { error: "invalid_token" }),
          ...(discovery === "header"
            ? { resource_metadata: options.metadataUrl?.(origin) ?? `${origin}${wellKnown}${path}` }
            : {}),
          ...(options.challengeScope ? { scope: options.challengeScope } : {}),
        }),
      });
    }
    const rule = state.rules[url.pathname.slice(path.length) || "/"] ?? {};
    if (rule.scope && !info.scope.split(" ").includes(rule.scope)) {
      return json({ error: "forbidden" }, 403, {
        "www-authenticate": challenge({
          error: "insufficient_scope",
          error_description: `This needs the scope ${rule.scope}`,
          scope: rule.scope,
        }),
      });
    }
    if ((rule.acr && info.acr !== rule.acr) || (rule.freshSince && (info.authTime ?? 0) < rule.freshSince)) {
      return json({ error: "unauthorized" }, 401, {
        "www-authenticate": challenge({
          error: "insufficient_user_authentication",
          error_description: "A stronger sign-in is required",
          ...(rule.acr ? { acr_values: rule.acr } : {}),
          ...(rule.freshSince ? { max_age: "0" } : {}),
        }),
      });
    }
    const rpc = body ? JSON.parse(body) : undefined;
    if (rpc?.method === "initialize") {
      return json({
        jsonrpc: "2.0",
        id: rpc.id,
        result: { protocolVersion: "2025-11-25", capabilities: {}, serverInfo: { name: "stand-in", version: "1" } },
      });
    }
    return json({ path: url.pathname, sub: info.sub ?? null, scope: info.scope });
  };

  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, signal: controller.signal, onListen() {} }, handler);
  origin = `http://127.0.0.1:${server.addr.port}`;
  resource = options.resource?.(origin) ?? `${origin}${path}`;
  return Object.assign(state, {
    url: `${origin}${path}`,
    origin,
    resource,
    async close() {
      controller.abort();
      await server.finished;
    },
  });
}
