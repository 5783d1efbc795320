"""Accounts owned by their people: invitations, and deactivation per membership.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-10 10:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("memberships") as batch:
        batch.add_column(
            sa.Column("is_active", sa.Boolean(), server_default=sa.true(), nullable=False)
        )
        batch.add_column(sa.Column("last_login_at", sa.DateTime(timezone=True), nullable=True))
    # An account a tenant admin deactivated was off everywhere; now it is off in its tenants
    # (the only tenant it had: deactivation used to need a single membership), and the
    # account-wide switch is left to operators.
    op.execute(
        "UPDATE memberships SET is_active = (SELECT users.is_active FROM users "
        "WHERE users.id = memberships.user_id)"
    )
    op.execute(sa.text("UPDATE users SET is_active = :on").bindparams(on=True))
    op.create_table(
        "invitations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("invited_by_user_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("role IN ('admin', 'member', 'viewer')",
                           name=op.f("ck_invitations_role")),
        sa.CheckConstraint("status IN ('pending', 'accepted', 'declined', 'revoked')",
                           name=op.f("ck_invitations_status")),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], ondelete="CASCADE",
                                name=op.f("fk_invitations_tenant_id_tenants")),
        sa.ForeignKeyConstraint(["invited_by_user_id"], ["users.id"], ondelete="SET NULL",
                                name=op.f("fk_invitations_invited_by_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_invitations")),
        sa.UniqueConstraint("code_hash", name=op.f("uq_invitations_code_hash")),
    )
    op.create_index(op.f("ix_invitations_tenant_id"), "invitations", ["tenant_id"])
    op.create_index(op.f("ix_invitations_email"), "invitations", ["email"])


def downgrade() -> None:
    op.drop_index(op.f("ix_invitations_email"), table_name="invitations")
    op.drop_index(op.f("ix_invitations_tenant_id"), table_name="invitations")
    op.drop_table("invitations")
    # Back to one switch per account: off if it is off in any tenant.
    op.execute(
        "UPDATE users SET is_active = NOT EXISTS (SELECT 1 FROM memberships WHERE "
        "memberships.user_id = users.id AND NOT memberships.is_active)"
    )
    with op.batch_alter_table("memberships") as batch:
        batch.drop_column("last_login_at")
        batch.drop_column("is_active")
