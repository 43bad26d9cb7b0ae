// A real OpenID provider for the tests (oidc-provider, OpenID-certified): JWT access tokens for the
// client credentials grant, bound to the resource the client names (RFC 8707).
//
//   node identity-provider.mjs SETTINGS.json
//
// SETTINGS: {"port": N, "keys": [private JWKs], "clients": [{"client_id", "client_secret", "scope"}]}.
// Prints "listening <issuer>" once it serves. Test-only routes beside the provider's own:
//   GET  /test/stats   {"jwks": how many times the JWKS was fetched, "discovery": ...}
//   POST /test/rotate  body {"keys": [private JWKs]}: sign with the first from now on, publish them all
import http from 'node:http';
import { readFileSync } from 'node:fs';

import Provider from 'oidc-provider';

const settings = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const issuer = `http://127.0.0.1:${settings.port}`;
const SCOPES = 'dicom.read dicom.write dicom.delete';

function provider(keys) {
  return new Provider(issuer, {
    clients: settings.clients.map((client) => ({
      client_id: client.client_id,
      client_secret: client.client_secret,
      ...(client.scope ? { scope: client.scope } : {}),
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      token_endpoint_auth_method: 'client_secret_post',
    })),
    jwks: { keys },
    scopes: ['openid', ...SCOPES.split(' ')],
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      resourceIndicators: {
        enabled: true,
        useGrantedResource: () => true,
        getResourceServerInfo: (ctx, resourceIndicator) => ({
          scope: SCOPES,
          audience: resourceIndicator,
          accessTokenTTL: 300,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'RS256' } },
        }),
      },
    },
  });
}

let current = provider(settings.keys);
const stats = { jwks: 0, discovery: 0 };

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    req.on('data', (chunk) => chunks.push(chunk));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

const server = http.createServer(async (req, res) => {
  const path = req.url.split('?')[0];
  if (path === '/test/stats') {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify(stats));
    return;
  }
  if (path === '/test/rotate' && req.method === 'POST') {
    const { keys } = JSON.parse(await readBody(req));
    current = provider(keys);
    res.writeHead(204);
    res.end();
    return;
  }
  if (path === '/jwks') stats.jwks += 1;
  if (path.startsWith('/.well-known/')) stats.discovery += 1;
  current.callback()(req, res);
});

server.listen(settings.port, '127.0.0.1', () => {
  console.log(`listening ${issuer}`);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
