import type { AuthorityKind, AuthorityRecord, AuthorityStatus } from "../ca/model.js";
import type { AuthorityRepository } from "../ca/ports.js";
import type { SqliteDatabase } from "./database.js";

interface AuthorityRow {
  id: string;
  kind: AuthorityKind;
  status: AuthorityStatus;
  subject: string;
  certificate_der: Buffer;
  key_label: string | null;
  parent_id: string | null;
  not_before: number;
  not_after: number;
  created_at: number;
}

const fromRow = (row: AuthorityRow): AuthorityRecord => ({
  id: row.id,
  kind: row.kind,
  status: row.status,
  subject: row.subject,
  certificateDer: row.certificate_der,
  keyLabel: row.key_label,
  parentId: row.parent_id,
  notBefore: new Date(row.not_before),
  notAfter: new Date(row.not_after),
  createdAt: new Date(row.created_at),
});

export class SqliteAuthorityRepository implements AuthorityRepository {
  private readonly statements;

  constructor(private readonly db: SqliteDatabase) {
    this.statements = {
      get: db.prepare("SELECT * FROM authorities WHERE id = ?"),
      list: db.prepare("SELECT * FROM authorities ORDER BY created_at, id"),
    };
  }

  insert(authority: AuthorityRecord): void {
    this.db
      .prepare(
        `INSERT INTO authorities (id, kind, status, subject, certificate_der, key_label, parent_id, not_before, not_after, created_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      )
      .run(
        authority.id,
        authority.kind,
        authority.status,
        authority.subject,
        authority.certificateDer,
        authority.keyLabel,
        authority.parentId,
        authority.notBefore.getTime(),
        authority.notAfter.getTime(),
        authority.createdAt.getTime(),
      );
  }

  get(id: string): AuthorityRecord | undefined {
    const row = this.statements.get.get(id) as AuthorityRow | undefined;
    return row && fromRow(row);
  }

  list(): AuthorityRecord[] {
    const rows = this.statements.list.all() as AuthorityRow[];
    return rows.map(fromRow);
  }

  setStatus(id: string, status: AuthorityStatus): void {
    this.db.prepare("UPDATE authorities SET status = ? WHERE id = ?").run(status, id);
  }
}
