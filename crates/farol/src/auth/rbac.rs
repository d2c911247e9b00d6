//! Roles and what each may do: the single place where authorization is decided.
//!
//! docs/rbac.md holds the same matrix as a table; a test renders [`matrix_markdown`] and
//! compares, so the documentation cannot drift from the code.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A user's role within an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything, including users and settings.
    Admin,
    /// Runs the team: all CRM data and its configuration; reads users and the audit log.
    Manager,
    /// Works clients: reads everything, creates and edits clients, contacts and notes.
    Agent,
    /// Reads only.
    Viewer,
}

impl Role {
    /// Every role, most powerful first.
    pub const ALL: [Role; 4] = [Role::Admin, Role::Manager, Role::Agent, Role::Viewer];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Manager => "manager",
            Role::Agent => "agent",
            Role::Viewer => "viewer",
        }
    }

    /// Whether this role may perform `permission`.
    pub fn allows(self, permission: Permission) -> bool {
        use Permission::*;
        match self {
            Role::Admin => true,
            Role::Manager => !matches!(permission, UsersManage | ChannelsManage),
            Role::Agent => matches!(permission, CrmRead | CrmWrite),
            Role::Viewer => matches!(permission, CrmRead),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "admin" => Ok(Role::Admin),
            "manager" => Ok(Role::Manager),
            "agent" => Ok(Role::Agent),
            "viewer" => Ok(Role::Viewer),
            other => Err(format!(
                "unknown role `{other}`; expected admin, manager, agent or viewer"
            )),
        }
    }
}

/// An action family checked by handlers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Permission {
    /// Read clients, contacts, tags, portfolios, custom field definitions, timelines.
    CrmRead,
    /// Create and edit clients and contacts, tag them, add timeline notes.
    CrmWrite,
    /// Delete clients and contacts.
    CrmDelete,
    /// Create, rename and delete tags, portfolios and custom field definitions.
    CrmConfigure,
    /// List users of the account.
    UsersRead,
    /// Create, change and deactivate users.
    UsersManage,
    /// Read the audit log.
    AuditRead,
    /// Run imports and manage mapping presets.
    ImportsRun,
    /// Start segmentation runs and rename clusters.
    SegmentsRun,
    /// Manage templates, audiences and campaigns; launch, pause and cancel campaigns.
    CampaignsRun,
    /// Manage channel accounts (provider credentials) and WPPConnect sessions.
    ChannelsManage,
}

impl Permission {
    /// Every permission, in documentation order.
    pub const ALL: [Permission; 11] = [
        Permission::CrmRead,
        Permission::CrmWrite,
        Permission::CrmDelete,
        Permission::CrmConfigure,
        Permission::UsersRead,
        Permission::UsersManage,
        Permission::AuditRead,
        Permission::ImportsRun,
        Permission::SegmentsRun,
        Permission::CampaignsRun,
        Permission::ChannelsManage,
    ];

    /// Short name and the routes it covers, for the documentation table.
    pub fn describe(self) -> (&'static str, &'static str) {
        match self {
            Permission::CrmRead => (
                "crm.read",
                "`GET` clients, contacts, tags, portfolios, custom fields, timelines",
            ),
            Permission::CrmWrite => (
                "crm.write",
                "`POST`/`PATCH` clients and contacts; `POST` timeline notes; create tags by assigning them",
            ),
            Permission::CrmDelete => ("crm.delete", "`DELETE` clients and contacts"),
            Permission::CrmConfigure => (
                "crm.configure",
                "`POST`/`PATCH`/`DELETE` tags, portfolios, custom field definitions",
            ),
            Permission::UsersRead => ("users.read", "`GET /users`"),
            Permission::UsersManage => ("users.manage", "`POST`/`PATCH`/`DELETE /users`"),
            Permission::AuditRead => ("audit.read", "`GET /audit`"),
            Permission::ImportsRun => (
                "imports.run",
                "`/imports` (upload, preview, start, cancel, reports) and `/import-presets`",
            ),
            Permission::SegmentsRun => (
                "segments.run",
                "`POST /segmentations`, `PATCH /clusters/{id}`, `/segmentations/{id}/smartico` (reading clusters is crm.read)",
            ),
            Permission::CampaignsRun => (
                "campaigns.run",
                "`/templates`, `/audiences`, `/campaigns` (create, edit, preview, launch, pause, resume, cancel, results), `/suppressions`, `/settings/campaigns`",
            ),
            Permission::ChannelsManage => (
                "channels.manage",
                "`/channel-accounts` (provider credentials: create, edit, delete; WPPConnect sessions)",
            ),
        }
    }
}

/// The role × permission matrix as a Markdown table.
pub fn matrix_markdown() -> String {
    let mut out = String::from("| permission | routes | admin | manager | agent | viewer |\n");
    out.push_str("|---|---|:-:|:-:|:-:|:-:|\n");
    for p in Permission::ALL {
        let (name, routes) = p.describe();
        out.push_str(&format!("| {name} | {routes} |"));
        for role in Role::ALL {
            out.push_str(if role.allows(p) { " ✓ |" } else { " — |" });
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_strictly_nested() {
        // Each role can do everything the next one can: a promotion never loses a permission.
        for pair in Role::ALL.windows(2) {
            for p in Permission::ALL {
                assert!(
                    !pair[1].allows(p) || pair[0].allows(p),
                    "{:?} {:?}",
                    pair,
                    p
                );
            }
        }
        assert!(!Role::Manager.allows(Permission::UsersManage));
        assert!(!Role::Agent.allows(Permission::CrmDelete));
        assert!(!Role::Viewer.allows(Permission::CrmWrite));
    }

    #[test]
    fn docs_rbac_md_shows_the_matrix_the_code_enforces() {
        let doc = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/rbac.md"),
        )
        .expect("docs/rbac.md exists");
        assert!(
            doc.contains(&matrix_markdown()),
            "docs/rbac.md is out of date; paste this table:\n{}",
            matrix_markdown()
        );
    }
}
