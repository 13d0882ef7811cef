//! The action classifier: every agent-driven action is `read`, `mutate` or `destructive`, and
//! destructive actions need confirmation before they run.
//!
//! ## What it defends
//! A prompt-injected agent (or a malicious plugin) getting an irreversible action through
//! without a human: deleting memory or files, revoking tokens, running shell commands, kicking
//! members, restarting the gateway. The classification feeds the approval gate and the audit log.
//!
//! ## What it guarantees
//! - **Fail closed.** An action that is not registered classifies as [`ActionClass::Destructive`]
//!   and requires confirmation; `known: false` in the [`Classification`] says why.
//! - **No downgrade, ever.** Registration happens on a [`ClassifierBuilder`]; [`seal`] turns it
//!   into a [`Classifier`], a type with no mutating method at all, so after bootstrap nothing can
//!   reclassify an action (the original exposed `lockRegistry()` but never called it). Even
//!   before sealing, registering an existing action with a *lower* class is refused; raising it
//!   is allowed.
//!
//! ## What it does not guarantee
//! The class of a *known* action is only as good as the table; the table is the original's 178
//! entries (69 read, 67 mutate, 42 destructive) plus three built-in tools of comis the
//! original lacked (`file.list` read, `file.edit` and `agents.spawn` mutate). Classification does not look at parameters:
//! `system.exec` is destructive whatever the command, and the exec validator judges the command.
//!
//! [`seal`]: ClassifierBuilder::seal

use std::collections::HashMap;

use serde::Serialize;

use crate::{Finding, GuardError, Severity};

/// Risk level of an action. Ordered: `Read < Mutate < Destructive`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ActionClass {
    /// No side effects; auto-approved.
    Read,
    /// Reversible side effects; logged and auto-approved.
    Mutate,
    /// Irreversible or high-risk; requires confirmation.
    Destructive,
}

impl ActionClass {
    pub fn as_str(self) -> &'static str {
        match self {
            ActionClass::Read => "read",
            ActionClass::Mutate => "mutate",
            ActionClass::Destructive => "destructive",
        }
    }
}

/// The answer for one action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Classification {
    pub class: ActionClass,
    /// Whether the action is registered. Unknown actions are classified destructive.
    pub known: bool,
    pub findings: Vec<Finding>,
}

impl Classification {
    pub fn requires_confirmation(&self) -> bool {
        self.class == ActionClass::Destructive
    }
}

const CATEGORY: &str = "action_classification";

/// Longest accepted action name, in bytes.
const MAX_ACTION_LEN: usize = 128;

/// Collects registrations before bootstrap ends. Consumed by [`ClassifierBuilder::seal`].
#[derive(Debug, Clone, Default)]
pub struct ClassifierBuilder {
    map: HashMap<String, ActionClass>,
}

impl ClassifierBuilder {
    /// An empty registry: every action is unknown (destructive) until registered.
    pub fn new() -> Self {
        ClassifierBuilder::default()
    }

    /// The built-in table of [`DEFAULT_ACTIONS`].
    pub fn with_defaults() -> Self {
        let map = DEFAULT_ACTIONS
            .iter()
            .map(|(name, class)| ((*name).to_string(), *class))
            .collect();
        ClassifierBuilder { map }
    }

    /// Registers `action` as `class`. Re-registering with the same or a higher class is
    /// allowed; a lower class is refused, so a plugin cannot talk `file.delete` down to `read`.
    pub fn register(&mut self, action: &str, class: ActionClass) -> Result<&mut Self, GuardError> {
        validate_action_name(action)?;
        match self.map.get(action) {
            Some(&existing) if class < existing => Err(GuardError::Config(format!(
                "refusing to downgrade action `{action}` from {} to {}",
                existing.as_str(),
                class.as_str()
            ))),
            _ => {
                self.map.insert(action.to_string(), class);
                Ok(self)
            }
        }
    }

    /// Ends registration. The returned [`Classifier`] has no way to change an entry.
    pub fn seal(self) -> Classifier {
        Classifier { map: self.map }
    }
}

fn validate_action_name(action: &str) -> Result<(), GuardError> {
    let valid_chars = action
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    let well_formed = !action.is_empty()
        && action.len() <= MAX_ACTION_LEN
        && valid_chars
        && !action.starts_with('.')
        && !action.ends_with('.')
        && !action.contains("..");
    if well_formed {
        Ok(())
    } else {
        Err(GuardError::Config(format!(
            "invalid action name {:?}: use 1-{MAX_ACTION_LEN} ASCII letters, digits, '_', '-', separated by single dots",
            action.chars().take(40).collect::<String>()
        )))
    }
}

/// A sealed action registry. Read-only by construction: there is no method that adds,
/// removes or changes an entry.
///
/// ```
/// use comis_guard::classify::{ActionClass, ClassifierBuilder};
///
/// let mut builder = ClassifierBuilder::with_defaults();
/// builder.register("weather.lookup", ActionClass::Read)?;
/// let classifier = builder.seal();
/// assert_eq!(classifier.classify("weather.lookup").class, ActionClass::Read);
/// assert!(classifier.requires_confirmation("file.delete"));
/// assert!(classifier.requires_confirmation("never.heard.of.it"));
/// # Ok::<(), comis_guard::GuardError>(())
/// ```
///
/// After sealing there is nothing to call:
///
/// ```compile_fail
/// use comis_guard::classify::{ActionClass, ClassifierBuilder};
///
/// let classifier = ClassifierBuilder::with_defaults().seal();
/// classifier.register("file.delete", ActionClass::Read);
/// ```
#[derive(Debug, Clone)]
pub struct Classifier {
    map: HashMap<String, ActionClass>,
}

impl Default for Classifier {
    /// The built-in table, sealed.
    fn default() -> Self {
        ClassifierBuilder::with_defaults().seal()
    }
}

impl Classifier {
    /// Classifies an action by exact name. Unknown actions are destructive.
    pub fn classify(&self, action: &str) -> Classification {
        let (class, known) = match self.map.get(action) {
            Some(&c) => (c, true),
            None => (ActionClass::Destructive, false),
        };
        let mut findings = Vec::new();
        if !known {
            findings.push(Finding::new("unknown_action", CATEGORY, Severity::Warning));
        }
        if class == ActionClass::Destructive {
            findings.push(Finding::new(
                "requires_confirmation",
                CATEGORY,
                Severity::Warning,
            ));
        }
        Classification {
            class,
            known,
            findings,
        }
    }

    /// True exactly for destructive (including unknown) actions.
    pub fn requires_confirmation(&self, action: &str) -> bool {
        self.classify(action).requires_confirmation()
    }

    /// The registered class, without the fail-closed default.
    pub fn registered(&self, action: &str) -> Option<ActionClass> {
        self.map.get(action).copied()
    }

    /// Every registered action, sorted by name (for `comis` audit listings).
    pub fn actions(&self) -> Vec<(&str, ActionClass)> {
        let mut all: Vec<(&str, ActionClass)> =
            self.map.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        all.sort_unstable();
        all
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

use ActionClass::{Destructive as D, Mutate as M, Read as R};

/// The built-in registry: the original's table, entry for entry.
pub const DEFAULT_ACTIONS: &[(&str, ActionClass)] = &[
    // Core reads
    ("file.read", R),
    ("memory.search", R),
    ("memory.get", R),
    ("config.read", R),
    ("status.check", R),
    ("skill.list", R),
    ("skill.load", R),
    ("skill.scan", R),
    ("skill.scan.reject", R),
    ("session.get", R),
    ("log.read", R),
    ("tool.execute", R),
    ("cron.list", R),
    ("cron.status", R),
    ("cron.runs", R),
    ("cron.wake", R),
    ("session.list", R),
    ("session.history", R),
    ("session.status", R),
    ("session.run_status", R),
    ("message.fetch", R),
    ("agents.list", R),
    ("gateway.status", R),
    ("config.schema", R),
    ("web.fetch", R),
    ("web.search", R),
    ("image.analyze", R),
    ("media.transcribe", R),
    ("media.describe_video", R),
    ("media.extract_document", R),
    ("memory.search_files", R),
    ("memory.get_file", R),
    ("config.history", R),
    ("config.diff", R),
    // Core mutations
    ("file.write", M),
    ("file.create", M),
    ("memory.store", M),
    ("memory.update", M),
    ("config.update", M),
    ("message.send", M),
    ("session.create", M),
    ("skill.install", M),
    ("skill.execute", M),
    ("message.reply", M),
    ("message.react", M),
    ("message.edit", M),
    ("cron.update", M),
    ("session.send", M),
    ("session.send_wait", M),
    ("tts.synthesize", M),
    ("canvas.present", M),
    ("canvas.eval", M),
    ("cron.add", M),
    ("session.spawn", M),
    ("subagent.list", R),
    ("subagent.kill", M),
    ("subagent.steer", M),
    ("env.list", R),
    ("daemon.setLogLevel", M),
    // Destructive: configuration, data, sessions, system
    ("config.patch", D),
    ("config.apply", D),
    ("config.reset", D),
    ("config.rollback", D),
    ("config.gc", D),
    ("file.delete", D),
    ("memory.delete", D),
    ("memory.clear", D),
    ("memory.flush", D),
    ("session.destroy", D),
    ("session.new", D),
    ("session.reset", D),
    ("session.delete", D),
    ("skill.uninstall", D),
    ("system.shutdown", D),
    ("system.exec", D),
    ("cron.remove", D),
    ("message.delete", D),
    ("gateway.restart", D),
    ("gateway.update", D),
    ("env.set", D),
    // Browser
    ("browser.status", R),
    ("browser.tabs", R),
    ("browser.profiles", R),
    ("browser.snapshot", R),
    ("browser.console", R),
    ("browser.start", M),
    ("browser.stop", M),
    ("browser.navigate", M),
    ("browser.open", M),
    ("browser.focus", M),
    ("browser.close", M),
    ("browser.screenshot", M),
    ("browser.pdf", M),
    ("browser.act", M),
    // Discord
    ("discord.pin", M),
    ("discord.unpin", M),
    ("discord.kick", D),
    ("discord.ban", D),
    ("discord.unban", M),
    ("discord.role_add", M),
    ("discord.role_remove", M),
    ("discord.set_topic", M),
    ("discord.set_slowmode", M),
    ("discord.guild_info", R),
    ("discord.channel_info", R),
    // Telegram
    ("telegram.pin", M),
    ("telegram.unpin", M),
    ("telegram.poll", M),
    ("telegram.sticker", M),
    ("telegram.chat_info", R),
    ("telegram.member_count", R),
    ("telegram.get_admins", R),
    ("telegram.set_title", M),
    ("telegram.set_description", M),
    ("telegram.ban", D),
    ("telegram.unban", M),
    ("telegram.promote", D),
    // Slack
    ("slack.pin", M),
    ("slack.unpin", M),
    ("slack.set_topic", M),
    ("slack.set_purpose", M),
    ("slack.archive", D),
    ("slack.unarchive", M),
    ("slack.create_channel", D),
    ("slack.invite", M),
    ("slack.kick", D),
    ("slack.channel_info", R),
    ("slack.members_list", R),
    ("slack.bookmark_add", M),
    // WhatsApp
    ("whatsapp.group_info", R),
    ("whatsapp.group_update_subject", M),
    ("whatsapp.group_update_description", M),
    ("whatsapp.group_participants_add", M),
    ("whatsapp.group_participants_remove", D),
    ("whatsapp.group_promote", D),
    ("whatsapp.group_demote", M),
    ("whatsapp.group_settings", M),
    ("whatsapp.group_invite_code", R),
    ("whatsapp.profile_status", M),
    ("whatsapp.group_leave", D),
    // Models and slash commands
    ("model.fallback", R),
    ("model.list", R),
    ("command.parse", R),
    ("command.context", R),
    ("command.status", R),
    ("model.switch", M),
    ("session.compact", M),
    // Prompt skills
    ("skill.prompt.load", R),
    ("skill.prompt.invoke", M),
    // Privileged management tools
    ("agents.create", D),
    ("agents.get", R),
    ("agents.update", M),
    ("agents.delete", D),
    ("agents.suspend", D),
    ("agents.resume", M),
    ("session.export", R),
    ("memory.stats", R),
    ("memory.browse", R),
    ("memory.export", R),
    ("channels.list", R),
    ("channels.get", R),
    ("channels.enable", D),
    ("channels.disable", D),
    ("channels.restart", D),
    ("tokens.list", R),
    ("tokens.create", D),
    ("tokens.revoke", D),
    ("tokens.rotate", D),
    ("models.list", R),
    ("models.test", R),
    // Graph pipelines
    ("graph.define", M),
    ("graph.execute", M),
    ("graph.status", R),
    ("graph.save", M),
    ("graph.load", R),
    ("graph.list", R),
    ("graph.cancel", D),
    ("graph.delete", D),
    // comis additions: built-in tools the original table lacked (issue 7). Without an entry
    // they would fail closed to destructive and wait for an operator on every call.
    ("file.edit", M),
    ("file.list", R),
    ("agents.spawn", M),
];

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use proptest::prelude::*;

    use super::*;

    /// The destructive set exactly as the inventory lists it.
    const INVENTORY_DESTRUCTIVE: [&str; 42] = [
        "config.patch",
        "config.apply",
        "config.reset",
        "config.rollback",
        "config.gc",
        "file.delete",
        "memory.delete",
        "memory.clear",
        "memory.flush",
        "session.destroy",
        "session.new",
        "session.reset",
        "session.delete",
        "skill.uninstall",
        "system.shutdown",
        "system.exec",
        "cron.remove",
        "message.delete",
        "gateway.restart",
        "gateway.update",
        "env.set",
        "discord.kick",
        "discord.ban",
        "telegram.ban",
        "telegram.promote",
        "slack.archive",
        "slack.create_channel",
        "slack.kick",
        "whatsapp.group_participants_remove",
        "whatsapp.group_promote",
        "whatsapp.group_leave",
        "agents.create",
        "agents.delete",
        "agents.suspend",
        "channels.enable",
        "channels.disable",
        "channels.restart",
        "tokens.create",
        "tokens.revoke",
        "tokens.rotate",
        "graph.cancel",
        "graph.delete",
    ];

    #[test]
    fn default_table_matches_the_inventory() {
        let names: HashSet<&str> = DEFAULT_ACTIONS.iter().map(|(n, _)| *n).collect();
        assert_eq!(names.len(), DEFAULT_ACTIONS.len(), "duplicate action");
        // The original's 178 plus comis's 3 (file.edit, file.list, agents.spawn).
        assert_eq!(DEFAULT_ACTIONS.len(), 181);
        let count = |c| DEFAULT_ACTIONS.iter().filter(|(_, k)| *k == c).count();
        assert_eq!(count(ActionClass::Read), 70);
        assert_eq!(count(ActionClass::Mutate), 69);
        assert_eq!(count(ActionClass::Destructive), 42);
        let destructive: HashSet<&str> = DEFAULT_ACTIONS
            .iter()
            .filter(|(_, k)| *k == ActionClass::Destructive)
            .map(|(n, _)| *n)
            .collect();
        assert_eq!(destructive, INVENTORY_DESTRUCTIVE.into_iter().collect());
        for (name, _) in DEFAULT_ACTIONS {
            assert!(validate_action_name(name).is_ok(), "{name}");
        }
    }

    #[test]
    fn seed_examples() {
        let c = Classifier::default();
        for a in ["file.read", "web.fetch", "memory.search", "channels.list"] {
            assert_eq!(c.classify(a).class, ActionClass::Read, "{a}");
            assert!(!c.requires_confirmation(a));
            assert!(c.classify(a).findings.is_empty());
        }
        for a in [
            "file.write",
            "message.send",
            "memory.store",
            "browser.navigate",
        ] {
            assert_eq!(c.classify(a).class, ActionClass::Mutate, "{a}");
            assert!(!c.requires_confirmation(a));
        }
        for a in INVENTORY_DESTRUCTIVE {
            let k = c.classify(a);
            assert_eq!(k.class, ActionClass::Destructive, "{a}");
            assert!(k.known);
            assert!(c.requires_confirmation(a));
            assert_eq!(k.findings.len(), 1);
        }
    }

    #[test]
    fn unknown_actions_fail_closed() {
        let c = Classifier::default();
        for a in [
            "",
            "file.Read",
            " file.read",
            "file.read ",
            "file.*",
            "plugin.do_something",
            "FILE.READ",
            "file.read\0",
        ] {
            let k = c.classify(a);
            assert_eq!(k.class, ActionClass::Destructive, "{a:?}");
            assert!(!k.known);
            assert!(k.findings.iter().any(|f| f.name == "unknown_action"));
            assert!(c.requires_confirmation(a));
        }
        let empty = ClassifierBuilder::new().seal();
        assert!(empty.is_empty());
        assert!(empty.requires_confirmation("file.read"));
    }

    #[test]
    fn downgrade_is_refused_before_sealing() {
        let mut b = ClassifierBuilder::with_defaults();
        for (action, low) in [
            ("file.delete", ActionClass::Read),
            ("file.delete", ActionClass::Mutate),
            ("system.exec", ActionClass::Read),
            ("file.write", ActionClass::Read),
        ] {
            let err = b.register(action, low).err();
            assert!(
                matches!(&err, Some(GuardError::Config(m)) if m.contains("downgrade")),
                "{action}"
            );
        }
        // Same class again, and upgrades, are fine.
        assert!(b.register("file.delete", ActionClass::Destructive).is_ok());
        assert!(b.register("web.fetch", ActionClass::Mutate).is_ok());
        assert!(b.register("file.write", ActionClass::Destructive).is_ok());
        assert!(b.register("plugin.new", ActionClass::Read).is_ok());
        let c = b.seal();
        assert_eq!(c.registered("file.delete"), Some(ActionClass::Destructive));
        assert_eq!(c.registered("web.fetch"), Some(ActionClass::Mutate));
        assert_eq!(c.registered("file.write"), Some(ActionClass::Destructive));
        assert_eq!(c.classify("plugin.new").class, ActionClass::Read);
        assert_eq!(c.len(), DEFAULT_ACTIONS.len() + 1);
    }

    #[test]
    fn registration_chains_and_validates_names() {
        let mut b = ClassifierBuilder::new();
        b.register("a.read", ActionClass::Read)
            .and_then(|b| b.register("a.write", ActionClass::Mutate))
            .unwrap();
        for bad in [
            "",
            ".x",
            "x.",
            "a..b",
            "has space",
            "ünïcode",
            "semi;colon",
            &"a".repeat(MAX_ACTION_LEN + 1),
        ] {
            assert!(
                b.register(bad, ActionClass::Destructive).is_err(),
                "{bad:?}"
            );
        }
        let c = b.seal();
        assert_eq!(
            c.actions(),
            vec![
                ("a.read", ActionClass::Read),
                ("a.write", ActionClass::Mutate)
            ]
        );
    }

    #[test]
    fn classification_serializes() {
        let c = Classifier::default();
        let json = serde_json::to_value(c.classify("mystery.action")).unwrap();
        assert_eq!(json["class"], "destructive");
        assert_eq!(json["known"], false);
        assert_eq!(json["findings"][0]["name"], "unknown_action");
    }

    fn class() -> impl Strategy<Value = ActionClass> {
        prop_oneof![
            Just(ActionClass::Read),
            Just(ActionClass::Mutate),
            Just(ActionClass::Destructive)
        ]
    }

    proptest! {
        /// Whatever is registered in whatever order, each action ends at the highest class
        /// ever attempted for it (or its default, if higher): nothing downgrades.
        #[test]
        fn registrations_never_downgrade(
            ops in prop::collection::vec((0usize..6, class()), 0..40),
        ) {
            let names = ["file.read", "file.delete", "x.one", "x.two", "web.fetch", "system.exec"];
            let mut b = ClassifierBuilder::with_defaults();
            let mut expect: HashMap<&str, ActionClass> = DEFAULT_ACTIONS.iter().copied().collect();
            for (i, c) in ops {
                let name = names[i];
                let before = expect.get(name).copied();
                let ok = b.register(name, c).is_ok();
                prop_assert_eq!(ok, before.is_none_or(|p| c >= p));
                if ok {
                    expect.insert(name, c);
                }
            }
            let sealed = b.seal();
            for name in names {
                prop_assert_eq!(sealed.registered(name), expect.get(name).copied());
            }
        }

        #[test]
        fn anything_unregistered_is_destructive(action in "\\PC{0,40}") {
            let c = Classifier::default();
            let k = c.classify(&action);
            prop_assert_eq!(k.known, c.registered(&action).is_some());
            if !k.known {
                prop_assert_eq!(k.class, ActionClass::Destructive);
                prop_assert!(c.requires_confirmation(&action));
            }
        }
    }
}
