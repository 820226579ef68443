// A real OpenID provider for webapp's tests: oidc-provider with its development sign-in pages
// (any account name signs in, no password), back-channel and RP-initiated logout, and two test
// hooks beside it: POST /_rotate swaps the signing key, and the logout tokens the provider sends
// (to the client's backchannel_logout_uri, through the `fetch` option) land in a mailbox that
// tests read (GET /_outbox) and relay to the app.
// Clients are "native" so that the app may run on any loopback port (the Flask test client's
// http://localhost, a live gunicorn's http://127.0.0.1:PORT).
// Usage: node provider.js PORT   (prints "ready" when listening)
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import http from 'node:http';

import Provider from 'oidc-provider';

const [port] = process.argv.slice(2);
const appBases = ['http://localhost', 'http://127.0.0.1'];
const issuer = `http://127.0.0.1:${port}`;
let outbox = [];

function newKey() {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { ...privateKey.export({ format: 'jwk' }), kid: randomUUID(), use: 'sig', alg: 'RS256' };
}

function client(id, name) {
  return {
    client_id: id,
    client_secret: `${id}-secret`,
    application_type: 'native',
    redirect_uris: appBases.map((base) => `${base}/login/${name}/callback`),
    post_logout_redirect_uris: appBases.map((base) => `${base}/login`),
    backchannel_logout_uri: `${issuer}/_backchannel`,
    backchannel_logout_session_required: true,
  };
}

function build(key) {
  const provider = new Provider(issuer, {
    clients: [client('webapp', 'test'), client('other', 'other')],
    jwks: { keys: [key] },
    pkce: { required: () => true },
    cookies: { keys: ['test-cookie-key'] },
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['name', 'preferred_username'],
    },
    conformIdTokenClaims: false,
    async fetch(url, options) {
      if (url === `${issuer}/_backchannel`) {
        outbox.push(new URLSearchParams(options.body).get('logout_token'));
        return new Response(null, { status: 200 });
      }
      return fetch(url, options);
    },
    features: {
      devInteractions: { enabled: true },
      backchannelLogout: { enabled: true },
      rpInitiatedLogout: { enabled: true },
    },
    async findAccount(ctx, id) {
      return {
        accountId: id,
        async claims() {
          return {
            sub: id,
            name: `User ${id}`,
            preferred_username: id,
            email: `${id}@example.test`,
            email_verified: !id.startsWith('unverified'),
          };
        },
      };
    },
  });
  provider.on('backchannel.error', (error) => console.error('backchannel', error.message));
  return provider;
}

let provider = build(newKey());

const server = http.createServer((req, res) => {
  if (req.url === '/_outbox') {
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify(outbox));
    outbox = [];
  } else if (req.url === '/_rotate' && req.method === 'POST') {
    provider = build(newKey());
    res.end();
  } else {
    provider.callback()(req, res);
  }
});
server.listen(Number(port), '127.0.0.1', () => console.log('ready'));
