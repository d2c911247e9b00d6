//! Cluster profiles (what sets each cluster apart), names in pt-BR and
//! English, and cross-run name matching.

use serde::{Deserialize, Serialize};

use crate::features::{TicketBand, UserFeatures, quantile_sorted};
use crate::model::{Channel, GameType};

/// One descriptive feature of a cluster compared with all users.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Descriptor {
    /// Feature name (see docs/segmentation.md).
    pub feature: String,
    /// Mean over the cluster's users.
    pub value: f64,
    /// Mean over all users.
    pub overall: f64,
    /// (value − overall) ÷ standard deviation over all users.
    pub z: f64,
    /// value ÷ overall (0 when overall is 0).
    pub ratio: f64,
}

/// The profile of one cluster (or of the noise group, label −1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterProfile {
    /// The cluster label (−1: noise, users that fit no cluster).
    pub cluster: i32,
    /// Users in it.
    pub size: usize,
    /// Share of all users.
    pub share: f64,
    /// Name in pt-BR.
    pub name_pt: String,
    /// Name in English.
    pub name_en: String,
    /// The name was given by a person (and carried over from a previous run).
    pub user_named: bool,
    /// The previous run's cluster this one continues, if matched.
    pub previous_cluster: Option<i32>,
    /// Median average ticket, BRL.
    pub median_ticket: f64,
    /// Share of users per preferred channel, [`Channel::ALL`] order (unknown excluded).
    pub channel_share: [f64; 4],
    /// Share of users per ticket band (low, medium, high).
    pub ticket_band_share: [f64; 3],
    /// Every descriptor, most distinctive (largest |z|) first.
    pub descriptors: Vec<Descriptor>,
    /// Scale-free summary used to match clusters across runs: the six game
    /// shares, night, weekend and promo shares, and ln(1 + median ticket) ÷ ln(1001).
    pub signature: Vec<f64>,
}

const DESCRIPTORS: usize = 17;

const DESCRIPTOR_NAMES: [&str; DESCRIPTORS] = [
    "share_crash",
    "share_slots",
    "share_live_casino",
    "share_sports",
    "share_table",
    "share_other",
    "log_avg_ticket",
    "bets_per_active_day",
    "night_share",
    "weekend_share",
    "promo_share",
    "avg_deposit",
    "net_deposit",
    "recency_days",
    "frequency",
    "ggr",
    "day_share",
];

fn descriptor_values(f: &UserFeatures) -> [f64; DESCRIPTORS] {
    [
        f.game_share[0],
        f.game_share[1],
        f.game_share[2],
        f.game_share[3],
        f.game_share[4],
        f.game_share[5],
        f.avg_ticket.ln_1p(),
        f.bets_per_active_day,
        f.night_share,
        f.weekend_share,
        f.promo_share,
        f.avg_deposit,
        f.net_deposit,
        f.recency_days,
        f64::from(f.frequency),
        f.ggr,
        f.day_share,
    ]
}

/// Builds one profile per label (clusters `0..k`, then noise if any), named
/// and with unique names.
pub fn profiles(features: &[UserFeatures], labels: &[i32]) -> Vec<ClusterProfile> {
    assert_eq!(features.len(), labels.len());
    let n = features.len().max(1) as f64;
    let values: Vec<[f64; DESCRIPTORS]> = features.iter().map(descriptor_values).collect();
    let mut mean = [0.0; DESCRIPTORS];
    for v in &values {
        for j in 0..DESCRIPTORS {
            mean[j] += v[j] / n;
        }
    }
    let mut sd = [0.0; DESCRIPTORS];
    for v in &values {
        for j in 0..DESCRIPTORS {
            sd[j] += (v[j] - mean[j]).powi(2) / n;
        }
    }
    let sd = sd.map(|s: f64| if s > 1e-24 { s.sqrt() } else { 1.0 });
    let k = super::cluster::cluster_count(labels);
    let mut groups: Vec<i32> = (0..k as i32).collect();
    if labels.contains(&-1) {
        groups.push(-1);
    }
    let mut out = Vec::new();
    for g in groups {
        let members: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == g).collect();
        if members.is_empty() {
            continue;
        }
        let m = members.len() as f64;
        let mut cm = [0.0; DESCRIPTORS];
        for &i in &members {
            for j in 0..DESCRIPTORS {
                cm[j] += values[i][j] / m;
            }
        }
        let mut descriptors: Vec<Descriptor> = (0..DESCRIPTORS)
            .map(|j| Descriptor {
                feature: DESCRIPTOR_NAMES[j].to_owned(),
                value: cm[j],
                overall: mean[j],
                z: (cm[j] - mean[j]) / sd[j],
                ratio: if mean[j].abs() > 1e-12 {
                    cm[j] / mean[j]
                } else {
                    0.0
                },
            })
            .collect();
        descriptors.sort_by(|a, b| b.z.abs().total_cmp(&a.z.abs()));
        let mut tickets: Vec<f64> = members.iter().map(|&i| features[i].avg_ticket).collect();
        tickets.sort_unstable_by(f64::total_cmp);
        let median_ticket = quantile_sorted(&tickets, 0.5);
        let mut channel_share = [0.0; 4];
        let known = members
            .iter()
            .filter(|&&i| features[i].channel.is_some())
            .count()
            .max(1) as f64;
        let mut ticket_band_share = [0.0; 3];
        for &i in &members {
            if let Some(c) = features[i].channel {
                channel_share[c.index()] += 1.0 / known;
            }
            match features[i].ticket_band {
                Some(TicketBand::Low) => ticket_band_share[0] += 1.0 / m,
                Some(TicketBand::Medium) => ticket_band_share[1] += 1.0 / m,
                Some(TicketBand::High) => ticket_band_share[2] += 1.0 / m,
                None => {}
            }
        }
        let mut signature: Vec<f64> = cm[..6].to_vec();
        signature.extend([
            cm[8],
            cm[9],
            cm[10],
            (median_ticket.ln_1p() / 1001f64.ln()).min(1.5),
        ]);
        out.push(ClusterProfile {
            cluster: g,
            size: members.len(),
            share: m / n,
            name_pt: String::new(),
            name_en: String::new(),
            user_named: false,
            previous_cluster: None,
            median_ticket,
            channel_share,
            ticket_band_share,
            descriptors,
            signature,
        });
    }
    for p in &mut out {
        let (pt, en) = name_parts(p);
        p.name_pt = pt.join(" · ");
        p.name_en = en.join(" · ");
    }
    make_unique(&mut out);
    out
}

fn z_of(p: &ClusterProfile, feature: &str) -> f64 {
    p.descriptors
        .iter()
        .find(|d| d.feature == feature)
        .map_or(0.0, |d| d.z)
}

fn value_of(p: &ClusterProfile, feature: &str) -> f64 {
    p.descriptors
        .iter()
        .find(|d| d.feature == feature)
        .map_or(0.0, |d| d.value)
}

fn game_words(g: GameType) -> (&'static str, &'static str) {
    match g {
        GameType::Crash => ("Crash", "Crash"),
        GameType::Slots => ("Slots", "Slots"),
        GameType::LiveCasino => ("Cassino ao vivo", "Live casino"),
        GameType::Sports => ("Esportes", "Sports"),
        GameType::Table => ("Jogos de mesa", "Table games"),
        GameType::Other => ("Outros jogos", "Other games"),
    }
}

/// The name's parts, most important first: pt-BR and English.
fn name_parts(p: &ClusterProfile) -> (Vec<String>, Vec<String>) {
    if p.cluster < 0 {
        return (
            vec!["Sem grupo (ruído)".into()],
            vec!["No group (noise)".into()],
        );
    }
    let (mut pt, mut en): (Vec<String>, Vec<String>) = (Vec::new(), Vec::new());
    let mut push = |a: &str, b: &str| {
        pt.push(a.to_owned());
        en.push(b.to_owned());
    };
    let shares: Vec<f64> = p.signature[..6].to_vec();
    let top = (0..6)
        .max_by(|&a, &b| shares[a].total_cmp(&shares[b]))
        .unwrap_or(5);
    let game = GameType::ALL[top];
    let high_ticket = z_of(p, "log_avg_ticket") > 0.7;
    let low_ticket = z_of(p, "log_avg_ticket") < -0.7;
    let night = value_of(p, "night_share") > 0.45 && z_of(p, "night_share") > 0.7;
    let daytime = value_of(p, "day_share") > 0.6 && z_of(p, "day_share") > 0.7;
    let weekend = value_of(p, "weekend_share") > 0.5 && z_of(p, "weekend_share") > 0.7;
    let promo = value_of(p, "promo_share") > 0.2 && z_of(p, "promo_share") > 0.7;
    let lapsed = z_of(p, "recency_days") > 1.0;
    let frequent = z_of(p, "bets_per_active_day") > 1.0;
    let dominant = shares[top] >= 0.5;
    let mut used_ticket = false;
    let mut used_weekend = false;
    if promo {
        push("Caçador de cashback", "Cashback hunter");
    } else if dominant && game == GameType::LiveCasino && high_ticket {
        push("Cassino ao vivo VIP", "Live casino VIP");
        used_ticket = true;
    } else if dominant && game == GameType::Sports && weekend {
        push("Esportes no fim de semana", "Weekend sports");
        used_weekend = true;
    } else if dominant {
        let (a, b) = game_words(game);
        push(a, b);
    } else {
        push("Multijogos", "Mixed games");
    }
    if !used_ticket && high_ticket {
        push("ticket alto", "high ticket");
    } else if !used_ticket && low_ticket {
        push("ticket baixo", "low ticket");
    }
    if night {
        push("noturno", "night");
    } else if weekend && !used_weekend {
        push("fim de semana", "weekend");
    } else if daytime {
        push("diurno", "daytime");
    }
    if lapsed {
        push("inativo", "lapsed");
    } else if frequent {
        push("frequente", "frequent");
    }
    (pt, en)
}

/// Makes names unique within a run: a repeated name gets its game (when
/// not in the name yet), then a number.
fn make_unique(profiles: &mut [ClusterProfile]) {
    for i in 0..profiles.len() {
        let clash = |ps: &[ClusterProfile], i: usize| {
            ps.iter()
                .enumerate()
                .any(|(j, q)| j != i && q.name_pt == ps[i].name_pt)
        };
        if !clash(profiles, i) || profiles[i].user_named {
            continue;
        }
        let top = (0..6)
            .max_by(|&a, &b| profiles[i].signature[a].total_cmp(&profiles[i].signature[b]))
            .unwrap_or(5);
        let (gp, ge) = game_words(GameType::ALL[top]);
        if !profiles[i].name_pt.contains(gp) {
            profiles[i].name_pt = format!("{} · {}", profiles[i].name_pt, gp.to_lowercase());
            profiles[i].name_en = format!("{} · {}", profiles[i].name_en, ge.to_lowercase());
        }
        let (base_pt, base_en) = (profiles[i].name_pt.clone(), profiles[i].name_en.clone());
        let mut n = 2;
        while clash(profiles, i)
            && profiles[..i]
                .iter()
                .any(|q| q.name_pt == profiles[i].name_pt)
        {
            profiles[i].name_pt = format!("{base_pt} ({n})");
            profiles[i].name_en = format!("{base_en} ({n})");
            n += 1;
        }
    }
}

/// A cluster of a previous run, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PreviousCluster {
    /// Its label in that run.
    pub cluster: i32,
    /// Its [`ClusterProfile::signature`].
    pub signature: Vec<f64>,
    /// Its name in pt-BR (possibly given by a person).
    pub name_pt: String,
    /// Its name in English.
    pub name_en: String,
    /// The name was given by a person.
    pub user_named: bool,
}

impl From<&ClusterProfile> for PreviousCluster {
    fn from(p: &ClusterProfile) -> Self {
        PreviousCluster {
            cluster: p.cluster,
            signature: p.signature.clone(),
            name_pt: p.name_pt.clone(),
            name_en: p.name_en.clone(),
            user_named: p.user_named,
        }
    }
}

/// Matches this run's clusters to the previous run's by minimum total
/// signature distance (Hungarian assignment); pairs farther apart than
/// `max_distance` stay unmatched. A matched cluster records its
/// predecessor and inherits a name a person gave it; names stay unique.
/// Returns the matched pairs (new label, previous label, distance).
pub fn carry_names(
    current: &mut [ClusterProfile],
    previous: &[PreviousCluster],
    max_distance: f64,
) -> Vec<(i32, i32, f64)> {
    let cur: Vec<usize> = (0..current.len())
        .filter(|&i| current[i].cluster >= 0)
        .collect();
    let prev: Vec<usize> = (0..previous.len())
        .filter(|&j| previous[j].cluster >= 0)
        .collect();
    if cur.is_empty() || prev.is_empty() {
        return Vec::new();
    }
    let cost: Vec<Vec<f64>> = cur
        .iter()
        .map(|&i| {
            prev.iter()
                .map(|&j| {
                    let (a, b) = (&current[i].signature, &previous[j].signature);
                    a.iter()
                        .zip(b)
                        .map(|(x, y)| (x - y) * (x - y))
                        .sum::<f64>()
                        .sqrt()
                })
                .collect()
        })
        .collect();
    let assignment = hungarian(&cost);
    let mut pairs = Vec::new();
    for (ci, pj) in assignment.into_iter().enumerate() {
        let Some(pj) = pj else { continue };
        let d = cost[ci][pj];
        if d > max_distance {
            continue;
        }
        let (c, p) = (&mut current[cur[ci]], &previous[prev[pj]]);
        c.previous_cluster = Some(p.cluster);
        if p.user_named {
            c.name_pt = p.name_pt.clone();
            c.name_en = p.name_en.clone();
            c.user_named = true;
        }
        pairs.push((c.cluster, p.cluster, d));
    }
    make_unique(current);
    pairs
}

/// Minimum-cost assignment of rows to distinct columns (rows may outnumber
/// columns or the reverse); `None` for rows left without a column.
/// O(n³) (Kuhn–Munkres with potentials).
pub fn hungarian(cost: &[Vec<f64>]) -> Vec<Option<usize>> {
    let rows = cost.len();
    let cols = cost.first().map_or(0, Vec::len);
    let n = rows.max(cols);
    if n == 0 {
        return Vec::new();
    }
    // Square matrix padded with a cost above every real one.
    let big = cost.iter().flatten().fold(0.0f64, |m, &c| m.max(c)) * 2.0 + 1.0;
    let a = |i: usize, j: usize| {
        if i < rows && j < cols {
            cost[i][j]
        } else {
            big
        }
    };
    let (mut u, mut v) = (vec![0.0; n + 1], vec![0.0; n + 1]);
    let mut p = vec![0usize; n + 1];
    let mut way = vec![0usize; n + 1];
    for i in 1..=n {
        p[0] = i;
        let mut j0 = 0;
        let mut minv = vec![f64::INFINITY; n + 1];
        let mut used = vec![false; n + 1];
        loop {
            used[j0] = true;
            let i0 = p[j0];
            let mut delta = f64::INFINITY;
            let mut j1 = 0;
            for j in 1..=n {
                if !used[j] {
                    let cur = a(i0 - 1, j - 1) - u[i0] - v[j];
                    if cur < minv[j] {
                        minv[j] = cur;
                        way[j] = j0;
                    }
                    if minv[j] < delta {
                        delta = minv[j];
                        j1 = j;
                    }
                }
            }
            for j in 0..=n {
                if used[j] {
                    u[p[j]] += delta;
                    v[j] -= delta;
                } else {
                    minv[j] -= delta;
                }
            }
            j0 = j1;
            if p[j0] == 0 {
                break;
            }
        }
        loop {
            let j1 = way[j0];
            p[j0] = p[j1];
            j0 = j1;
            if j0 == 0 {
                break;
            }
        }
    }
    let mut out = vec![None; rows];
    for j in 1..=n {
        if p[j] >= 1 && p[j] - 1 < rows && j - 1 < cols {
            out[p[j] - 1] = Some(j - 1);
        }
    }
    out
}

/// Channel share helper for callers: the most common channel of a profile.
pub fn top_channel(p: &ClusterProfile) -> Option<Channel> {
    let i = (0..4).max_by(|&a, &b| p.channel_share[a].total_cmp(&p.channel_share[b]))?;
    (p.channel_share[i] > 0.0).then_some(Channel::ALL[i])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(game: GameType, ticket: f64, night: f64, weekend: f64, promo: f64) -> UserFeatures {
        let mut game_share = [0.0; 6];
        game_share[game.index()] = 0.9;
        game_share[GameType::Other.index()] += 0.1;
        UserFeatures {
            user_id: String::new(),
            favorite_game: Some(game),
            game_share,
            bets: 50,
            stake: ticket * 50.0,
            avg_ticket: ticket,
            ticket_band: None,
            active_days: 10,
            bets_per_active_day: 5.0,
            night_share: night,
            day_share: 0.3,
            weekend_share: weekend,
            peak_hour: Some(20),
            peak_weekday: Some(2),
            channel: Some(Channel::Whatsapp),
            promo_share: promo,
            promo_amount: 0.0,
            deposits: 3,
            avg_deposit: 100.0,
            withdrawals: 1,
            avg_withdrawal: 50.0,
            net_deposit: 250.0,
            recency_days: 2.0,
            frequency: 50,
            monetary: ticket * 50.0,
            ggr: ticket * 2.0,
        }
    }

    /// Five planted groups of 20 users each.
    fn planted() -> (Vec<UserFeatures>, Vec<i32>) {
        let mut f = Vec::new();
        let mut l = Vec::new();
        let groups = [
            user(GameType::Crash, 200.0, 0.8, 0.3, 0.02),
            user(GameType::Slots, 5.0, 0.2, 0.3, 0.02),
            user(GameType::LiveCasino, 800.0, 0.3, 0.3, 0.02),
            user(GameType::Sports, 30.0, 0.1, 0.85, 0.02),
            user(GameType::Slots, 10.0, 0.2, 0.3, 0.5),
        ];
        for (g, u) in groups.iter().enumerate() {
            for _ in 0..20 {
                f.push(u.clone());
                l.push(g as i32);
            }
        }
        (f, l)
    }

    #[test]
    fn names_say_what_sets_each_cluster_apart() {
        let (f, l) = planted();
        let p = profiles(&f, &l);
        let names: Vec<(&str, &str)> = p
            .iter()
            .map(|p| (p.name_pt.as_str(), p.name_en.as_str()))
            .collect();
        assert_eq!(
            names[0],
            (
                "Crash · ticket alto · noturno",
                "Crash · high ticket · night"
            )
        );
        assert_eq!(names[1], ("Slots · ticket baixo", "Slots · low ticket"));
        assert_eq!(names[2], ("Cassino ao vivo VIP", "Live casino VIP"));
        assert_eq!(names[3], ("Esportes no fim de semana", "Weekend sports"));
        assert_eq!(
            names[4],
            (
                "Caçador de cashback · ticket baixo",
                "Cashback hunter · low ticket"
            )
        );
        assert_eq!(p[0].size, 20);
        assert!((p[0].share - 0.2).abs() < 1e-12);
        assert_eq!(p[2].median_ticket, 800.0);
        assert_eq!(top_channel(&p[0]), Some(Channel::Whatsapp));
        // The most distinctive descriptor of the crash group is its crash share.
        assert_eq!(p[0].descriptors[0].feature, "share_crash");
        assert!(p[0].descriptors[0].z > 1.0);
    }

    #[test]
    fn names_are_unique_within_a_run() {
        let (mut f, mut l) = planted();
        // A second slots low-ticket group, active at different hours only a bit.
        for _ in 0..20 {
            f.push(user(GameType::Slots, 4.0, 0.25, 0.3, 0.02));
            l.push(5);
        }
        let p = profiles(&f, &l);
        let mut names: Vec<&str> = p.iter().map(|p| p.name_pt.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), p.len());
        assert_eq!(p[5].name_pt, "Slots · ticket baixo (2)");
    }

    #[test]
    fn daytime_players_are_named_so() {
        let (mut f, mut l) = planted();
        for _ in 0..20 {
            let mut u = user(GameType::Table, 40.0, 0.0, 0.1, 0.02);
            u.day_share = 0.95;
            f.push(u);
            l.push(5);
        }
        let p = profiles(&f, &l);
        assert_eq!(p[5].name_pt, "Jogos de mesa · diurno");
        assert_eq!(p[5].name_en, "Table games · daytime");
    }

    #[test]
    fn noise_is_its_own_group() {
        let (f, mut l) = planted();
        l[0] = -1;
        let p = profiles(&f, &l);
        let noise = p.last().unwrap();
        assert_eq!(noise.cluster, -1);
        assert_eq!(noise.size, 1);
        assert_eq!(noise.name_en, "No group (noise)");
    }

    #[test]
    fn renamed_clusters_keep_their_names_across_runs() {
        let (f, l) = planted();
        let mut first = profiles(&f, &l);
        first[2].name_pt = "Baleias do ao vivo".into();
        first[2].name_en = "Live whales".into();
        first[2].user_named = true;
        let previous: Vec<PreviousCluster> = first.iter().map(PreviousCluster::from).collect();
        // The next run finds the same groups in another order.
        let order = [3, 0, 4, 2, 1];
        let l2: Vec<i32> = l
            .iter()
            .map(|&g| order.iter().position(|&o| o == g).unwrap() as i32)
            .collect();
        let mut second = profiles(&f, &l2);
        let pairs = carry_names(&mut second, &previous, 0.3);
        assert_eq!(pairs.len(), 5);
        for (new, old, d) in &pairs {
            assert_eq!(order[*new as usize], *old);
            assert!(*d < 1e-9);
        }
        assert_eq!(second[3].name_pt, "Baleias do ao vivo");
        assert!(second[3].user_named);
        assert_eq!(second[3].previous_cluster, Some(2));
        assert_eq!(second[0].name_pt, "Esportes no fim de semana");
    }

    #[test]
    fn far_clusters_are_not_matched() {
        let (f, l) = planted();
        let first = profiles(&f, &l);
        let previous = vec![PreviousCluster::from(&first[0])];
        let only_slots: Vec<UserFeatures> = f[20..40].to_vec();
        let mut second = profiles(&only_slots, &[0; 20]);
        assert!(carry_names(&mut second, &previous, 0.3).is_empty());
        assert_eq!(second[0].previous_cluster, None);
    }

    #[test]
    fn hungarian_finds_the_minimum_assignment() {
        let cost = vec![
            vec![4.0, 1.0, 3.0],
            vec![2.0, 0.0, 5.0],
            vec![3.0, 2.0, 2.0],
        ];
        // Optimal: 0→1 (1), 1→0 (2), 2→2 (2) = 5.
        assert_eq!(hungarian(&cost), vec![Some(1), Some(0), Some(2)]);
        let wide = vec![vec![5.0, 1.0, 9.0]];
        assert_eq!(hungarian(&wide), vec![Some(1)]);
        let tall = vec![vec![5.0], vec![1.0]];
        assert_eq!(hungarian(&tall), vec![None, Some(0)]);
    }
}
