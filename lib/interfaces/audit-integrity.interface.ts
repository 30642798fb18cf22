import type { KeyObject } from 'node:crypto';

/**
 * A public key that checks checkpoint signatures: an Ed25519 public `KeyObject`, its PEM
 * text, or a verifier key string `<name>+<key id>+<base64 key>` (what
 * `npx nestjs-system-audit keygen` prints). A private key is accepted too (its public half
 * is used).
 */
export type AuditPublicKey = KeyObject | string;

/** A signed checkpoint of the audit log's Merkle tree. */
export interface AuditCheckpoint {
  /** The number of events it covers: seq 1 to `treeSize`. */
  treeSize: number;
  /** The tree's SHA-256 root hash, base64. */
  rootHash: string;
  /** The signed note (C2SP tlog-checkpoint): origin, tree size, root hash, signature lines. */
  note: string;
}

/** `integrity` of `AuditModule.forRoot()`: keep a Merkle tree over `audit_log` and sign checkpoints of it. */
export interface AuditIntegrityOptions {
  /**
   * The Ed25519 private key that signs checkpoints: a `KeyObject` or PKCS#8 PEM text.
   * Keep it outside the database (a secret store); to rotate, give the new key here and
   * the old key's public half in `verificationKeys`.
   */
  signingKey: KeyObject | string;
  /** The checkpoints' first line, naming this log, e.g. `audit.example.com/orders`. */
  origin: string;
  /** The key name in signature lines (default: `origin`). */
  keyName?: string;
  /**
   * When to sign a checkpoint: once `events` new events are sequenced, or `ms` after the
   * last checkpoint when there are new events (default `{ events: 10000, ms: 10000 }`: an event is tamper-evident once a checkpoint covers it).
   */
  checkpointEvery?: { events?: number; ms?: number };
  /**
   * Sends each new checkpoint out of the database (after it is stored): a file
   * (`fileAnchor(path)`), an object store with a retention lock, another system. A
   * failure is logged and the checkpoint stays stored; the next one covers it.
   */
  anchor?: (checkpoint: AuditCheckpoint) => void | Promise<void>;
  /** Public keys of earlier signing keys, so that `verify()` accepts the checkpoints they signed. */
  verificationKeys?: AuditPublicKey[];
  /** How often (ms) stored events are given their `seq` and leaf: the delay before an event is in the tree (default 1000). */
  sequenceEvery?: number;
}

/** An inclusion proof of one event, checkable offline with `verifyInclusion(proof, publicKey)`. */
export interface AuditInclusionProof {
  /** The event's id. */
  id: string;
  seq: number;
  /** `seq - 1`: the leaf's index in the tree. */
  leafIndex: number;
  /** The size of the tree the proof is for (the checkpoint's). */
  treeSize: number;
  /** SHA-256(0x00 || the event's canonical JSON), base64. */
  leafHash: string;
  /** The audit path, base64 hashes from the leaf up. */
  path: string[];
  /**
   * The signed checkpoint of `treeSize` whose root the path leads to, as `checkpoint()`
   * returns it (its `note` is what the signature covers).
   */
  checkpoint: AuditCheckpoint;
}

/** A consistency proof between two checkpoints, checkable with `verifyConsistency(older, newer, proof, publicKey)`. */
export interface AuditConsistencyProof {
  oldSize: number;
  newSize: number;
  /** Base64 hashes (RFC 9162 section 2.1.4). */
  path: string[];
}

/** What `verify()` reports. */
export type AuditIntegrityProblemKind =
  | 'modified'
  | 'missing'
  | 'inserted'
  | 'reordered'
  | 'bad-signature'
  | 'inconsistent'
  | 'truncated';

/** A node of the stored Merkle tree (`audit_tree`): level 0 holds the leaves, a leaf's index is its event's `seq - 1`. */
export interface AuditIntegrityTreeNode {
  level: number;
  /** The node's position in its level, from 0: it covers the leaves `index * 2^level` to `(index + 1) * 2^level - 1`. */
  index: number;
}

export interface AuditIntegrityProblem {
  kind: AuditIntegrityProblemKind;
  /**
   * The event's seq, when the problem is about one event; for a checkpoint that does not
   * verify or does not extend the log (`bad-signature`, `inconsistent`), the seq of the
   * last event it covers (its tree size); for rows removed from the end with their tree
   * leaves (`truncated`), the first seq missing.
   */
  seq?: number;
  /** The event's id, when known. */
  id?: string;
  /** The checkpoint's tree size, when the problem is about a checkpoint. */
  treeSize?: number;
  /**
   * The row of `audit_tree` found altered, absent or forged, when the problem is about the stored
   * tree itself (the events below it hash as they should).
   */
  node?: AuditIntegrityTreeNode;
  /** What was found, in words. */
  message: string;
}

export interface AuditVerifyOptions {
  /** Keys that checkpoints may be signed with (default: the configured signing key's and `verificationKeys`). */
  publicKeys?: AuditPublicKey[];
  /**
   * Checkpoints kept outside the database (e.g. the anchor's file): checked like the
   * stored ones, so that rows or checkpoints removed from the database are found.
   */
  checkpoints?: string[];
  /** Called now and then with the number of events checked so far and the total. */
  onProgress?: (checked: number, total: number) => void;
}

export interface AuditVerifyResult {
  /** No problem found. */
  ok: boolean;
  /** The size of the tree checked (the largest of the last checkpoint and the events sequenced). */
  treeSize: number;
  /** Every problem found (at most 10,000; `truncatedReport` says when more were left out). */
  problems: AuditIntegrityProblem[];
  /** Events checked, and checkpoints checked. */
  events: number;
  checkpoints: number;
  /** More problems than listed were found. */
  truncatedReport?: boolean;
  /**
   * Events past the last validly signed checkpoint: present, but no signature covers them
   * yet (with the stored tree, they are still compared with their stored leaves).
   */
  unverified?: number;
  /**
   * Events stored without a seq (the integrator's backlog, or every event stored while
   * `integrity` was off): not in the tree yet, so not checked. The integrator gives them
   * their seq once integrity is on.
   */
  unsequenced?: number;
  /**
   * Events 1 to `purgedThrough` were removed by the retention purge (a signed purge
   * record says so); they are not reported missing.
   */
  purgedThrough?: number;
  /**
   * `false` when checkpoint signatures were not checked (the CLI's `verify` given no
   * `--public-key`): the log agrees with its checkpoints, but nothing shows who signed them.
   */
  signaturesChecked?: false;
}

/** What `checkInclusion` and `checkConsistency` answer: the proof holds, or why not. */
export type AuditProofResult = { ok: true } | { ok: false; reason: string };
