// A real OpenID provider (panva's oidc-provider) on loopback for lapse's tests.
//
// Usage: node provider.mjs '<json config>'
//   { "accounts": { "<login>": { "email": "...", "email_verified": true, "groups": ["..."] } },
//     "clients":  [ { "client_id": "...", "client_secret": "...", "redirect_uris": ["..."] } ],
//     "id_token_ttl": 600 }
// Prints one line, {"issuer": "http://127.0.0.1:<port>"}, once it listens. Signing keys are
// generated at start and published at the jwks_uri. Sign-in uses the provider's development
// pages: any login name is accepted and becomes the account id.
import http from 'node:http';
import { generateKeyPairSync } from 'node:crypto';
import Provider from 'oidc-provider';

const config = JSON.parse(process.argv[2] ?? '{}');
const accounts = config.accounts ?? {};

const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const jwk = { ...privateKey.export({ format: 'jwk' }), kid: 'lapse-test-1', alg: 'RS256', use: 'sig' };

const server = http.createServer();
server.listen(0, '127.0.0.1', () => {
  const { port } = server.address();
  const issuer = `http://127.0.0.1:${port}`;
  const provider = new Provider(issuer, {
    clients: (config.clients ?? []).map((c) => ({
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
      ...c,
    })),
    jwks: { keys: [jwk] },
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      groups: ['groups'],
    },
    scopes: ['openid', 'email', 'groups', 'offline_access'],
    // The claims of the scopes asked for go into the ID token as well as to userinfo.
    conformIdTokenClaims: false,
    ttl: {
      IdToken: config.id_token_ttl ?? 600,
      AccessToken: config.id_token_ttl ?? 600,
      AuthorizationCode: 60,
      Session: 3600,
      Interaction: 600,
      Grant: 3600,
    },
    pkce: { required: () => true },
    cookies: { keys: [config.cookie_key ?? 'lapse-test-cookie-key'] },
    async findAccount(ctx, id) {
      const claims = accounts[id];
      if (!claims) return undefined;
      return { accountId: id, async claims() { return { sub: id, ...claims }; } };
    },
  });
  // Plain http on loopback: the provider's secure-cookie checks are for deployments.
  provider.proxy = true;
  server.on('request', provider.callback());
  process.stdout.write(`${JSON.stringify({ issuer })}\n`);
});

process.on('SIGTERM', () => server.close(() => process.exit(0)));
