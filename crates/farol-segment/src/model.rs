//! The records: transactions and users, with their closed vocabularies.

use serde::{Deserialize, Serialize};

/// What a transaction is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TxKind {
    /// A stake placed on a game.
    Bet,
    /// A payout of a bet.
    Win,
    /// Money paid in.
    Deposit,
    /// Money paid out.
    Withdrawal,
    /// Cashback credited by the operator.
    Cashback,
    /// A bonus credited by the operator.
    Bonus,
}

impl TxKind {
    /// Every kind, in a fixed order.
    pub const ALL: [TxKind; 6] = [
        TxKind::Bet,
        TxKind::Win,
        TxKind::Deposit,
        TxKind::Withdrawal,
        TxKind::Cashback,
        TxKind::Bonus,
    ];

    /// The canonical (lower-case English) name.
    pub fn as_str(self) -> &'static str {
        match self {
            TxKind::Bet => "bet",
            TxKind::Win => "win",
            TxKind::Deposit => "deposit",
            TxKind::Withdrawal => "withdrawal",
            TxKind::Cashback => "cashback",
            TxKind::Bonus => "bonus",
        }
    }

    /// Parses English and Portuguese spellings, any case (`"BET"`, `"aposta"`, `"saque"`).
    pub fn parse(s: &str) -> Option<TxKind> {
        // Canonical spellings first, without allocating: this runs per row.
        if let Some(k) = TxKind::ALL.iter().find(|k| k.as_str() == s) {
            return Some(*k);
        }
        let k = s.trim().to_ascii_lowercase();
        Some(match k.as_str() {
            "bet" | "aposta" | "stake" | "wager" => TxKind::Bet,
            "win" | "ganho" | "premio" | "prêmio" | "payout" => TxKind::Win,
            "deposit" | "deposito" | "depósito" => TxKind::Deposit,
            "withdrawal" | "withdraw" | "saque" | "retirada" => TxKind::Withdrawal,
            "cashback" | "cash_back" | "cash back" => TxKind::Cashback,
            "bonus" | "bônus" | "freebet" | "free_bet" => TxKind::Bonus,
            _ => return None,
        })
    }
}

/// The family of game a transaction belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GameType {
    /// Crash games (Aviator, Spaceman…).
    Crash,
    /// Slot machines.
    Slots,
    /// Live-dealer casino.
    LiveCasino,
    /// Sports betting.
    Sports,
    /// RNG table games (roulette, blackjack).
    Table,
    /// Anything else (and transactions without a game, like deposits).
    Other,
}

impl GameType {
    /// Every game type, in the order used by feature vectors.
    pub const ALL: [GameType; 6] = [
        GameType::Crash,
        GameType::Slots,
        GameType::LiveCasino,
        GameType::Sports,
        GameType::Table,
        GameType::Other,
    ];

    /// Index in [`GameType::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// The canonical (snake_case English) name.
    pub fn as_str(self) -> &'static str {
        match self {
            GameType::Crash => "crash",
            GameType::Slots => "slots",
            GameType::LiveCasino => "live_casino",
            GameType::Sports => "sports",
            GameType::Table => "table",
            GameType::Other => "other",
        }
    }

    /// Parses English and Portuguese spellings; an empty value is `Other`
    /// (deposits and withdrawals have no game).
    pub fn parse(s: &str) -> Option<GameType> {
        if let Some(g) = GameType::ALL.iter().find(|g| g.as_str() == s) {
            return Some(*g);
        }
        let k = s.trim().to_ascii_lowercase().replace(['-', ' '], "_");
        Some(match k.as_str() {
            "crash" => GameType::Crash,
            "slots" | "slot" | "caca_niquel" | "caça_níquel" => GameType::Slots,
            "live_casino" | "livecasino" | "live" | "cassino_ao_vivo" | "ao_vivo" => {
                GameType::LiveCasino
            }
            "sports" | "sport" | "esportes" | "esporte" | "sportsbook" => GameType::Sports,
            "table" | "mesa" | "table_games" => GameType::Table,
            "other" | "outros" | "outro" | "" => GameType::Other,
            _ => return None,
        })
    }
}

/// A user's preferred contact channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    /// Text message.
    Sms,
    /// WhatsApp.
    Whatsapp,
    /// E-mail.
    Email,
    /// App push notification.
    Push,
}

impl Channel {
    /// Every channel, in the order used by feature vectors.
    pub const ALL: [Channel; 4] = [
        Channel::Sms,
        Channel::Whatsapp,
        Channel::Email,
        Channel::Push,
    ];

    /// Index in [`Channel::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// The canonical name.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Sms => "sms",
            Channel::Whatsapp => "whatsapp",
            Channel::Email => "email",
            Channel::Push => "push",
        }
    }

    /// Parses common spellings (`"WhatsApp"`, `"wpp"`, `"e-mail"`).
    pub fn parse(s: &str) -> Option<Channel> {
        let k = s.trim().to_ascii_lowercase().replace(['-', ' ', '_'], "");
        Some(match k.as_str() {
            "sms" | "texto" => Channel::Sms,
            "whatsapp" | "wpp" | "zap" | "wa" => Channel::Whatsapp,
            "email" | "mail" => Channel::Email,
            "push" | "app" => Channel::Push,
            _ => return None,
        })
    }
}

/// One cleaned transaction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transaction {
    /// The operator's id of the transaction (unique).
    pub transaction_id: String,
    /// The operator's id of the user.
    pub user_id: String,
    /// When it happened, epoch milliseconds UTC.
    pub created_at: i64,
    /// What it is.
    pub kind: TxKind,
    /// Game family.
    pub game_type: GameType,
    /// Game name, as given (may be empty).
    pub game_name: String,
    /// Amount in BRL, non-negative.
    pub amount: f64,
}

/// One user row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserRow {
    /// The operator's id of the user.
    pub user_id: String,
    /// Full name.
    pub name: String,
    /// E-mail address.
    pub email: String,
    /// Phone, as given.
    pub phone: String,
    /// Preferred contact channel, when known.
    pub preferred_channel: Option<Channel>,
    /// Sign-up date (`YYYY-MM-DD`), as given.
    pub signup_date: String,
    /// Brazilian state (UF).
    pub state: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vocabularies_parse_english_and_portuguese() {
        assert_eq!(TxKind::parse(" Aposta "), Some(TxKind::Bet));
        assert_eq!(TxKind::parse("SAQUE"), Some(TxKind::Withdrawal));
        assert_eq!(TxKind::parse("refund"), None);
        assert_eq!(GameType::parse("Live Casino"), Some(GameType::LiveCasino));
        assert_eq!(GameType::parse("esportes"), Some(GameType::Sports));
        assert_eq!(GameType::parse(""), Some(GameType::Other));
        assert_eq!(GameType::parse("bingo"), None);
        assert_eq!(Channel::parse("WhatsApp"), Some(Channel::Whatsapp));
        assert_eq!(Channel::parse("E-mail"), Some(Channel::Email));
        assert_eq!(Channel::parse("fax"), None);
        for (i, g) in GameType::ALL.iter().enumerate() {
            assert_eq!(g.index(), i);
            assert_eq!(GameType::parse(g.as_str()), Some(*g));
        }
    }
}
