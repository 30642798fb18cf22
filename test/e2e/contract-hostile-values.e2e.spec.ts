import { Body, Controller, Injectable, Post, UseGuards, type CanActivate, type ExecutionContext } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { DataSource } from 'typeorm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Audited, AuditService } from '../../lib/index.js';
import { createTestDatabase, databases, type TestDatabase } from '../support/test-database.js';
import { changesOf, CtrDoc, startContractApp, type ContractApp } from './contract-app.js';

interface HostileBody {
  user: string;
  display: string;
  targetId: string;
  reason: string;
  note: string;
  body: string;
  /** Each text field repeated this many times, server-side (past the body parser's limit). */
  repeat?: number;
}

/** Signs in whoever the body names, with the display name it gives (an attacker's profile). */
@Injectable()
class BodyUserGuard implements CanActivate {
  canActivate(context: ExecutionContext): boolean {
    const request = context.switchToHttp().getRequest<{ body?: HostileBody; user?: unknown }>();
    const body = request.body;
    if (body?.repeat) {
      for (const key of ['display', 'targetId', 'reason', 'note', 'body'] as const) if (key !== 'targetId' || body.user !== 'big-log') body[key] = body[key].repeat(body.repeat);
      delete body.repeat;
    }
    if (request.body?.user) request.user = { id: request.body.user, email: request.body.display };
    return true;
  }
}

const bodyOf = (request: unknown) => (request as { body: HostileBody }).body;

@Controller('ctr-hostile')
@UseGuards(BodyUserGuard)
class HostileController {
  constructor(
    @InjectDataSource() private readonly dataSource: DataSource,
    private readonly audit: AuditService,
  ) {}

  @Post('audited')
  @Audited('ctr.hostile.audited', {
    target: ({ request }) => ({ type: 'Doc', id: bodyOf(request).targetId }),
    reason: ({ request }) => bodyOf(request).reason,
    context: ({ request }) => ({ note: bodyOf(request).note }),
  })
  async audited(@Body() body: HostileBody): Promise<{ id: number }> {
    const doc = await this.dataSource.getRepository(CtrDoc).save({ body: body.body });
    return { id: doc.id };
  }

  /** The same values given to `log()`. */
  @Post('logged')
  async logged(@Body() body: HostileBody): Promise<{ ok: true }> {
    await this.audit.log({
      action: 'ctr.hostile.logged',
      actor: { type: 'user', id: body.user, display: body.display },
      target: { type: 'Doc', id: body.targetId },
      reason: body.reason,
      context: { note: body.note.slice(0, 1000) },
    });
    return { ok: true };
  }
}

const MIB = 1024 * 1024;

describe.each(databases())('contract: hostile values never break the write, on %s', (kind) => {
  let db: TestDatabase;
  let t: ContractApp;

  beforeAll(async () => {
    db = await createTestDatabase(kind);
    t = await startContractApp({ db, controllers: [HostileController], providers: [BodyUserGuard] });
    // A text column as long as a document may be there.
    if (kind === 'mariadb') await t.dataSource.query('ALTER TABLE ctr_doc MODIFY body LONGTEXT NOT NULL');
  });
  afterAll(async () => {
    await t?.close();
    await db?.drop();
  });

  const latest = async (action: string) => (await t.rows()).filter((row) => row.action === action).at(-1)!;

  it('NUL bytes in the reason, actor display, target id, context and changed field: 2xx, stored as the six characters \\u0000', async () => {
    // PostgreSQL's text refuses NUL in the app's own table: the changed field carries it elsewhere.
    const fieldValue = kind === 'postgres' ? 'plain body' : 'body\u0000end';
    const response = await t.request('/ctr-hostile/audited', {
      method: 'POST',
      json: { user: 'mallory', display: 'mal\u0000lory', targetId: 'doc\u00001', reason: 'why\u0000not', note: 'n\u0000b', body: fieldValue },
    });
    expect(response.status).toBe(201);
    const row = await latest('ctr.hostile.audited');
    expect([row.actorDisplay, row.targetId, row.reason]).toEqual(['mal\\u0000lory', 'doc\\u00001', 'why\\u0000not']);
    expect(row.context).toMatchObject({ note: 'n\\u0000b' });
    if (kind !== 'postgres') expect(changesOf([row], 'CtrDoc')[0]!.fields['body']).toEqual({ from: null, to: 'body\\u0000end' });
    expect(await t.journal()).toBe(0);

    const logged = await t.request('/ctr-hostile/logged', {
      method: 'POST',
      json: { user: 'mal\u0000id', display: 'mal\u0000lory', targetId: 'doc\u00002', reason: 'log\u0000reason', note: 'x\u0000', body: '' },
    });
    expect(logged.status).toBe(201);
    const logRow = await latest('ctr.hostile.logged');
    expect([logRow.actorId, logRow.actorDisplay, logRow.targetId, logRow.reason]).toEqual(['mal\\u0000id', 'mal\\u0000lory', 'doc\\u00002', 'log\\u0000reason']);
  });

  it('the events stored with hostile ids are found again by the ids the app gave', async () => {
    const response = await t.request('/ctr-hostile/logged', {
      method: 'POST',
      json: { user: 'find\u0000me', display: 'x', targetId: 'doc\u0000find', reason: 'r', note: 'n', body: '' },
    });
    expect(response.status).toBe(201);
    const byTarget = await t.audit.find({ target: { type: 'Doc', id: 'doc\u0000find' } });
    expect(byTarget.items.map((event) => event.action)).toEqual(['ctr.hostile.logged']);
    const history = await t.audit.history({ type: 'Doc', id: 'doc\u0000find' });
    expect(history.map((event) => event.action)).toEqual(['ctr.hostile.logged']);
    const byActor = await t.audit.find({ actorType: 'user', actorId: 'find\u0000me' });
    expect(byActor.items.map((event) => event.action)).toEqual(['ctr.hostile.logged']);
  });

  it.each([255, 256, 300, 2000])('an @Audited target id of %i characters: 2xx, and history() / find() by that id find its event', async (length) => {
    const targetId = `long-${length}-`.padEnd(length, 'i');
    const response = await t.request('/ctr-hostile/audited', {
      method: 'POST',
      json: { user: 'u', display: 'x', targetId, reason: 'r', note: 'n', body: 'b' },
    });
    expect(response.status).toBe(201);
    const history = await t.audit.history({ type: 'Doc', id: targetId });
    expect(history.map((event) => event.action)).toEqual(['ctr.hostile.audited']);
    const byTarget = await t.audit.find({ target: { type: 'Doc', id: targetId } });
    expect(byTarget.items.map((event) => event.action)).toEqual(['ctr.hostile.audited']);
  });

  it('two @Audited target ids sharing their first 255 characters: stored apart, each found by its own id', async () => {
    const head = 'shared-'.padEnd(255, 's');
    for (const tail of ['-one', '-two']) {
      const response = await t.request('/ctr-hostile/audited', {
        method: 'POST',
        json: { user: `apart${tail}`, display: 'x', targetId: `${head}${tail}`, reason: 'r', note: 'n', body: 'b' },
      });
      expect(response.status).toBe(201);
    }
    const rows = (await t.rows()).filter((row) => row.actorId?.startsWith('apart-'));
    expect(rows).toHaveLength(2);
    expect(rows[0]!.targetId).not.toBe(rows[1]!.targetId);
    for (const row of rows) {
      expect(row.targetId!.length).toBeLessThanOrEqual(255);
      expect(row.targetId).toMatch(/^shared-s+…\[truncated \d+ chars; sha256 [0-9a-f]{16}\]$/);
    }
    for (const tail of ['-one', '-two']) {
      const history = await t.audit.history({ type: 'Doc', id: `${head}${tail}` });
      expect(history.map((event) => event.actor.id)).toEqual([`apart${tail}`]);
      const byTarget = await t.audit.find({ target: { type: 'Doc', id: `${head}${tail}` } });
      expect(byTarget.items.map((event) => event.actor.id)).toEqual([`apart${tail}`]);
      // The id read back is the stored one, and finds the event too (the viewer's timeline link).
      const again = await t.audit.history({ type: 'Doc', id: history[0]!.target!.id });
      expect(again.map((event) => event.id)).toEqual([history[0]!.id]);
    }
  });

  it('an actor id of 300 characters: 2xx, and find({ actorId }) by that id finds its event, not another sharing its first 255', async () => {
    const head = 'actor-'.padEnd(255, 'a');
    for (const tail of ['-one', '-two']) {
      const response = await t.request('/ctr-hostile/audited', {
        method: 'POST',
        json: { user: `${head}${tail}`.padEnd(300, 'z'), display: 'x', targetId: `by-actor${tail}`, reason: 'r', note: 'n', body: 'b' },
      });
      expect(response.status).toBe(201);
    }
    for (const tail of ['-one', '-two']) {
      const actorId = `${head}${tail}`.padEnd(300, 'z');
      const byActor = await t.audit.find({ actorType: 'user', actorId });
      expect(byActor.items.map((event) => event.target?.id)).toEqual([`by-actor${tail}`]);
      const byActorAlone = await t.audit.find({ actor: { id: actorId } });
      expect(byActorAlone.items.map((event) => event.target?.id)).toEqual([`by-actor${tail}`]);
    }
  });

  it('log() given an attacker’s 1 MiB reason and display name: stored bounded, the request not failed', async () => {
    const response = await t.request('/ctr-hostile/logged', {
      method: 'POST',
      json: { user: 'big-log', display: 'x', targetId: 'doc-log', reason: 'x', note: 'n', body: '', repeat: MIB },
    });
    expect(response.status).toBe(201);
    const row = await latest('ctr.hostile.logged');
    expect([row.actorId, row.targetId, row.actorDisplay, row.reason]).toEqual(['big-log', 'doc-log', 'x'.repeat(255), 'x'.repeat(1024)]);
  });

  it('log() given an attacker’s ids of 2,000 characters: 2xx, stored cut with a digest, found by the ids given', async () => {
    const user = 'log-user-'.padEnd(2000, 'u');
    const targetId = 'log-doc-'.padEnd(2000, 'd');
    const response = await t.request('/ctr-hostile/logged', { method: 'POST', json: { user, display: 'x', targetId, reason: 'r', note: 'n', body: '' } });
    expect(response.status).toBe(201);
    const row = await latest('ctr.hostile.logged');
    expect(row.actorId).toMatch(/^log-user-u+…\[truncated \d+ chars; sha256 [0-9a-f]{16}\]$/);
    expect(row.targetId).toMatch(/^log-doc-d+…\[truncated \d+ chars; sha256 [0-9a-f]{16}\]$/);
    expect((await t.audit.history({ type: 'Doc', id: targetId })).map((event) => event.id)).toEqual([row.id]);
    expect((await t.audit.find({ actorType: 'user', actorId: user })).items.map((event) => event.id)).toEqual([row.id]);
  });

  it('lone surrogates everywhere: 2xx, stored as U+FFFD', async () => {
    const response = await t.request('/ctr-hostile/audited', {
      method: 'POST',
      body: JSON.stringify({ user: 'sur', display: 'a\uD800b', targetId: 'id\uDC00', reason: 'r\uD83D', note: '\uDFFFn', body: 'b\uD800' }),
      headers: { 'content-type': 'application/json' },
    });
    expect(response.status).toBe(201);
    const row = await latest('ctr.hostile.audited');
    expect([row.actorDisplay, row.targetId, row.reason]).toEqual(['a\uFFFDb', 'id\uFFFD', 'r\uFFFD']);
    expect(row.context).toMatchObject({ note: '\uFFFDn' });
    expect(changesOf([row], 'CtrDoc')[0]!.fields['body']).toEqual({ from: null, to: 'b\uFFFD' });
  });

  it('1 MiB strings in every field: 2xx, stored bounded (JSON strings cut at 64 KiB with a marker, columns cut)', { timeout: 60_000 }, async () => {
    const response = await t.request('/ctr-hostile/audited', {
      method: 'POST',
      json: { user: 'big', display: 'x', targetId: 'x', reason: 'x', note: 'x', body: 'x', repeat: MIB },
    });
    expect(response.status).toBe(201);
    const { id } = (await response.json()) as { id: number };
    expect((await t.dataSource.getRepository(CtrDoc).findOneByOrFail({ id })).body).toHaveLength(MIB);
    const row = await latest('ctr.hostile.audited');
    expect(row.actorId).toBe('big');
    for (const value of [row.actorDisplay, row.targetId, row.reason]) {
      expect(value!.length).toBeGreaterThan(0);
      expect(value!.length).toBeLessThan(MIB);
    }
    const to = (changesOf([row], 'CtrDoc')[0]!.fields['body'] as { to: string }).to;
    expect(to.length).toBeLessThanOrEqual(64 * 1024 + 200);
    expect(to).toMatch(/…\[truncated \d+ chars; sha256 [^\]]+\]$/);
    expect(JSON.stringify(row.context).length).toBeLessThan(64 * 1024);
    // The trail reads back.
    const page = await t.audit.find({ action: 'ctr.hostile.audited', limit: 10 });
    expect(page.items.length).toBeGreaterThan(0);
    expect(await t.journal()).toBe(0);
  });
});
