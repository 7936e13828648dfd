// Signs for sealift's tests with Sigstore's own JavaScript tooling, never with sealift.
//
//   node sign.js key    KEY.pem ARTIFACT OUT.json ROOT.json [dsse]
//       a bundle signed with a private key (PKCS#8 PEM, as `openssl genpkey` writes),
//       a message signature over ARTIFACT's bytes, or a DSSE in-toto statement whose
//       subject is ARTIFACT's sha256 (`dsse`), logged by @sigstore/mock's Rekor (a bundle
//       must carry a log entry or a timestamp); ROOT.json names that Rekor's key.
//   node sign.js keyless ARTIFACT OUT.json ROOT.json IDENTITY ISSUER [expired]
//       a keyless bundle: @sigstore/mock's Fulcio, CT log and Rekor answer @sigstore/sign
//       in-process (nock), so nothing leaves the machine; ROOT.json gets a Sigstore trusted
//       root naming their certificate and keys. `expired`: the CA's clock is an hour
//       behind, so the certificate (10 minutes) has expired when Rekor logs the entry.
//   node sign.js attach REGISTRY/REPO@DIGEST BUNDLE.json
//       attach a bundle to an image as an OCI 1.1 referrer with @sigstore/oci
//       (plain HTTP for 127.0.0.1).
'use strict';
const crypto = require('crypto');
const fs = require('fs');
const sign = require('@sigstore/sign');
const mock = require('@sigstore/mock');
const { bundleToJSON } = require('@sigstore/bundle');

const BUNDLE_TYPE = 'application/vnd.dev.sigstore.bundle.v0.3+json';
const FULCIO_URL = 'https://fulcio.sigstore.dev';
const REKOR_URL = 'https://rekor.sigstore.dev';

const pair = () => crypto.generateKeyPairSync('ec', { namedCurve: 'prime256v1' });

// The mock Rekor, answering in-process through nock.
async function mockRekor() {
  const tlog = await mock.initializeTLog(REKOR_URL, pair());
  require('@sigstore/mock/dist/mock').mock(REKOR_URL, mock.rekorHandler(tlog));
  return tlog;
}

// A Sigstore trusted root naming the mock services' keys and certificate.
function trustedRoot({ tlog, ca, ctlog }) {
  const start = '2020-01-01T00:00:00Z';
  const keyId = (spki) => crypto.createHash('sha256').update(spki).digest('base64');
  const key = (raw) => ({ rawBytes: b64(raw), keyDetails: 'PKIX_ECDSA_P256_SHA_256', validFor: { start } });
  return {
    mediaType: 'application/vnd.dev.sigstore.trustedroot+json;version=0.1',
    tlogs: [{ baseUrl: REKOR_URL, hashAlgorithm: 'SHA2_256', publicKey: key(tlog.publicKey), logId: { keyId: keyId(tlog.publicKey) } }],
    certificateAuthorities: ca ? [{
      subject: { organization: 'sigstore.mock', commonName: 'sigstore' },
      uri: FULCIO_URL,
      certChain: { certificates: [{ rawBytes: b64(ca.rootCertificate) }] },
      validFor: { start },
    }] : [],
    ctlogs: ctlog ? [{ baseUrl: 'https://ctfe.sigstore.dev', hashAlgorithm: 'SHA2_256', publicKey: key(ctlog.publicKey), logId: { keyId: b64(ctlog.logID) } }] : [],
    timestampAuthorities: [],
  };
}

function keySigner(pem) {
  const key = crypto.createPrivateKey(pem);
  const publicKey = crypto.createPublicKey(key).export({ format: 'pem', type: 'spki' }).toString();
  // Ed25519 signs the message itself; ECDSA and RSA sign its SHA-256.
  const alg = key.asymmetricKeyType === 'ed25519' ? null : 'sha256';
  return {
    sign: async (data) => ({
      signature: crypto.sign(alg, data, key),
      key: { $case: 'publicKey', publicKey, hint: '' },
    }),
  };
}

function statement(artifact) {
  const sha256 = crypto.createHash('sha256').update(artifact).digest('hex');
  return Buffer.from(JSON.stringify({
    _type: 'https://in-toto.io/Statement/v1',
    subject: [{ name: 'image', digest: { sha256 } }],
    predicateType: 'https://sealift.dev/test/v1',
    predicate: {},
  }));
}

async function keyBundle([keyFile, artifactFile, out, rootOut, form]) {
  const signer = keySigner(fs.readFileSync(keyFile, 'utf8'));
  const artifact = fs.readFileSync(artifactFile);
  // A bundle must carry a log entry or a timestamp: @sigstore/mock's Rekor logs it (as an
  // intoto entry: its dsse entries lack the envelopeHash sigstore-verify reads).
  const tlog = await mockRekor();
  const witnesses = [new sign.RekorWitness({ rekorBaseURL: REKOR_URL, entryType: 'intoto', fetchOnConflict: false })];
  const bundle = form === 'dsse'
    ? await new sign.DSSEBundleBuilder({ signer, witnesses })
        .create({ data: statement(artifact), type: 'application/vnd.in-toto+json' })
    : await new sign.MessageSignatureBundleBuilder({ signer, witnesses })
        .create({ data: artifact });
  fs.writeFileSync(out, JSON.stringify(bundleToJSON(bundle)));
  fs.writeFileSync(rootOut, JSON.stringify(trustedRoot({ tlog }), null, 1));
}

function b64(bytes) {
  return Buffer.from(bytes.buffer ? Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength) : bytes).toString('base64');
}

async function keylessBundle([artifactFile, out, rootOut, identity, issuer, expired]) {
  const caClock = expired ? new Date(Date.now() - 60 * 60 * 1000) : undefined;
  const ctlog = await mock.initializeCTLog(pair(), caClock);
  const ca = await mock.initializeCA(pair(), ctlog, caClock);
  require('@sigstore/mock/dist/mock').mock(FULCIO_URL, mock.fulcioHandler(ca));
  const tlog = await mockRekor();

  // The mock Fulcio reads the token's claims without checking its signature.
  const jwt = (claims) => [{ alg: 'none', typ: 'JWT' }, claims]
    .map((p) => Buffer.from(JSON.stringify(p)).toString('base64url')).join('.') + '.';
  const identityProvider = { getToken: async () => jwt({ sub: identity, email: identity, email_verified: true, iss: issuer, aud: 'sigstore' }) };
  const signer = new sign.FulcioSigner({ identityProvider, fulcioBaseURL: FULCIO_URL });
  const witness = new sign.RekorWitness({ rekorBaseURL: REKOR_URL, entryType: 'intoto', fetchOnConflict: false });
  const artifact = fs.readFileSync(artifactFile);
  const bundle = await new sign.MessageSignatureBundleBuilder({ signer, witnesses: [witness] })
    .create({ data: artifact });
  fs.writeFileSync(out, JSON.stringify(bundleToJSON(bundle)));

  fs.writeFileSync(rootOut, JSON.stringify(trustedRoot({ tlog, ca, ctlog }), null, 1));
}

async function attach([ref, bundleFile]) {
  const oci = require('@sigstore/oci');
  const [imageName, imageDigest] = ref.split('@');
  const desc = await oci.attachArtifactToImage({
    imageName,
    imageDigest,
    artifact: fs.readFileSync(bundleFile),
    mediaType: BUNDLE_TYPE,
    // An anonymous loopback registry: no sign-in (it sends no challenge to answer).
    credentials: undefined,
  });
  process.stdout.write(JSON.stringify(desc) + '\n');
}

const [mode, ...args] = process.argv.slice(2);
const modes = { key: keyBundle, keyless: keylessBundle, attach };
if (!modes[mode]) {
  console.error(`usage: node sign.js key|keyless|attach …`);
  process.exit(2);
}
modes[mode](args).catch((e) => {
  // Print the causes too: @sigstore/oci wraps the registry's answer.
  for (let c = e; c; c = c.cause) console.error(c && c.stack ? c.stack : String(c));
  process.exit(1);
});
