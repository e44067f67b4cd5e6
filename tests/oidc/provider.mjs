// A national eID for Custodia's tests: a real OpenID Provider (the `oidc-provider` package)
// whose ID tokens carry the citizen's national ID number in a claim.
//
//   node provider.mjs --redirect-uri URI [--client-id ID] [--client-secret S] [--claim NAME]
//
// Listens on 127.0.0.1 at a free port and prints one JSON line, {"issuer": "..."}, once it
// is ready. Signing in is a form that takes the national ID number (a stand-in for the
// card and PIN of a real eID); consent for the one client is implied.
//
// A test may ask for one misbehaving token response per national ID, to see the relying
// party refuse it: POST /_test/tamper {"national_id": ID, "mode": MODE}, where MODE is
//   forged     the ID token signed by a key that is not the provider's
//   expired    a genuine signature over an ID token that expired ten minutes ago
//   audience   a genuine signature over an ID token for another client
//   issuer     a genuine signature over an ID token naming another issuer
//   replay     the ID token of this ID's previous sign-in (its nonce belongs to that one)
//   resigned   the same claims signed again with the provider's key: a control, which
//              must still be accepted (so the others fail for what they change)
import http from 'node:http';
import { parseArgs } from 'node:util';
import * as jose from 'jose';
import Provider from 'oidc-provider';

const { values: args } = parseArgs({
  options: {
    'redirect-uri': { type: 'string' },
    'client-id': { type: 'string', default: 'custodia' },
    'client-secret': { type: 'string', default: 'custodia-test-secret' },
    claim: { type: 'string', default: 'national_id' },
  },
});
if (!args['redirect-uri']) {
  console.error('provider.mjs: --redirect-uri is required');
  process.exit(2);
}

const { privateKey } = await jose.generateKeyPair('RS256', { extractable: true });
const signingJwk = { ...(await jose.exportJWK(privateKey)), kid: 'eid-1', alg: 'RS256', use: 'sig' };
const { privateKey: strangerKey } = await jose.generateKeyPair('RS256');

const tamper = new Map(); // national ID -> mode, used once
const lastToken = new Map(); // national ID -> the previous ID token handed out

const server = http.createServer();
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const issuer = `http://127.0.0.1:${server.address().port}`;

const provider = new Provider(issuer, {
  clients: [{
    client_id: args['client-id'],
    client_secret: args['client-secret'],
    redirect_uris: [args['redirect-uri']],
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  jwks: { keys: [signingJwk] },
  cookies: { keys: ['custodia-test-eid-cookies'] },
  pkce: { required: () => true },
  ttl: { Interaction: 600, Session: 3600, Grant: 3600, AuthorizationCode: 60, IdToken: 600, AccessToken: 600 },
  claims: { openid: ['sub', args.claim] },
  conformIdTokenClaims: false,
  features: { devInteractions: { enabled: false } },
  interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
  async findAccount(_ctx, id) {
    return { accountId: id, claims: async () => ({ sub: id, [args.claim]: id }) };
  },
  // The relying party is the provider's own client: consent is implied.
  async loadExistingGrant(ctx) {
    const grantId = ctx.oidc.result?.consent?.grantId
      || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
    if (grantId) return ctx.oidc.provider.Grant.find(grantId);
    const grant = new ctx.oidc.provider.Grant({
      clientId: ctx.oidc.client.clientId,
      accountId: ctx.oidc.session.accountId,
    });
    grant.addOIDCScope('openid');
    grant.addOIDCClaims(['sub', args.claim]);
    await grant.save();
    return grant;
  },
});

async function resign(payload, key) {
  return new jose.SignJWT(payload)
    .setProtectedHeader({ alg: 'RS256', kid: 'eid-1', typ: 'JWT' })
    .sign(key);
}

provider.use(async (ctx, next) => {
  await next();
  const body = ctx.body;
  if (ctx.method !== 'POST' || ctx.path !== '/token' || !body || typeof body !== 'object' || !body.id_token) {
    return;
  }
  const claims = jose.decodeJwt(body.id_token);
  const id = claims[args.claim];
  const previous = lastToken.get(id);
  lastToken.set(id, body.id_token);
  const mode = tamper.get(id);
  if (!mode) return;
  tamper.delete(id);
  const now = Math.floor(Date.now() / 1000);
  switch (mode) {
    case 'forged': body.id_token = await resign(claims, strangerKey); break;
    case 'expired': body.id_token = await resign({ ...claims, iat: now - 1200, exp: now - 600 }, privateKey); break;
    case 'audience': body.id_token = await resign({ ...claims, aud: 'another-client', azp: 'another-client' }, privateKey); break;
    case 'issuer': body.id_token = await resign({ ...claims, iss: 'http://127.0.0.1:1' }, privateKey); break;
    case 'replay': if (previous) body.id_token = previous; break;
    case 'resigned': body.id_token = await resign(claims, privateKey); break;
    default: break;
  }
});

const escape = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function readForm(req) {
  return new Promise((resolve, reject) => {
    let data = '';
    req.setEncoding('utf8');
    req.on('data', (chunk) => { data += chunk; if (data.length > 10_000) req.destroy(); });
    req.on('end', () => resolve(new URLSearchParams(data)));
    req.on('error', reject);
  });
}

const handle = provider.callback();
server.on('request', async (req, res) => {
  try {
    const url = new URL(req.url, issuer);
    if (req.method === 'POST' && url.pathname === '/_test/tamper') {
      const chunks = [];
      for await (const c of req) chunks.push(c);
      const { national_id: id, mode } = JSON.parse(Buffer.concat(chunks).toString('utf8'));
      tamper.set(id, mode);
      res.writeHead(204).end();
      return;
    }
    const login = url.pathname.match(/^\/interaction\/([^/]+)\/login$/);
    if (req.method === 'POST' && login) {
      const form = await readForm(req);
      const id = (form.get('national_id') || '').trim();
      if (!id) {
        res.writeHead(400, { 'content-type': 'text/plain' }).end('national_id is required');
        return;
      }
      await provider.interactionFinished(req, res, { login: { accountId: id } }, { mergeWithLastSubmission: false });
      return;
    }
    const page = url.pathname.match(/^\/interaction\/([^/]+)$/);
    if (req.method === 'GET' && page) {
      const details = await provider.interactionDetails(req, res);
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>National eID</title></head>
<body><h1>National eID</h1>
<form method="post" action="/interaction/${escape(details.uid)}/login">
<label>National ID number <input id="eid-national-id" name="national_id" autofocus></label>
<button id="eid-sign-in" type="submit">Sign in</button>
</form></body></html>`);
      return;
    }
    handle(req, res);
  } catch (err) {
    console.error(err);
    if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' });
    res.end(String(err?.message || err));
  }
});

console.log(JSON.stringify({ issuer }));
