#!/usr/bin/env python3
"""Baseline for the segmentation benchmark: pandas + scikit-learn computing the
same features as farol-segment (docs/segmentation.md) from the same Parquet
files, then KMeans with automatic k by sampled silhouette (and optionally
HDBSCAN). Prints a `RESULT {json}` line like the Rust benchmark.

    python bench/segment_baseline.py --dir /tmp/farol-segment-bench [--hdbscan]
"""
import argparse
import json
import resource
import time

import numpy as np
import pandas as pd
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score, silhouette_score

SHARE_W, PROMO_W, VOLUME_W = 3.0, 3.5, 0.5
GAMES = ["crash", "slots", "live_casino", "sports", "table", "other"]


def robust(x, weight):
    q1, med, q3 = np.percentile(x, [25, 50, 75])
    iqr = q3 - q1
    if iqr <= 1e-12:
        iqr = 1.0
    return (x - med) / (iqr / weight)


def features(df):
    local = df["created_at"].dt.tz_convert("America/Sao_Paulo")
    df = df.assign(hour=local.dt.hour, weekday=local.dt.day_of_week, day=local.dt.floor("D"))
    bets = df[df["type"] == "bet"]
    g = bets.groupby("user_id")
    stake = g["amount"].sum()
    n_bets = g["amount"].size()
    by_game = bets.pivot_table(index="user_id", columns="game_type", values="amount", aggfunc="sum", fill_value=0.0)
    by_game = by_game.reindex(columns=GAMES, fill_value=0.0)
    night = bets[(bets["hour"] >= 22) | (bets["hour"] < 6)].groupby("user_id").size()
    weekend = bets[bets["weekday"] >= 5].groupby("user_id").size()
    days = g["day"].nunique()
    sums = df.pivot_table(index="user_id", columns="type", values="amount", aggfunc=["sum", "count"], fill_value=0)
    users = sums.index
    def col(kind, what):
        key = (what, kind)
        return sums[key] if key in sums.columns else pd.Series(0.0, index=users)
    stake = stake.reindex(users, fill_value=0.0)
    n_bets = n_bets.reindex(users, fill_value=0)
    safe = lambda a, b: np.where(b > 0, a / np.where(b > 0, b, 1), 0.0)
    shares = safe(by_game.reindex(users, fill_value=0.0).to_numpy(), stake.to_numpy()[:, None])
    ticket = safe(stake.to_numpy(), n_bets.to_numpy())
    per_day = safe(n_bets.to_numpy(), days.reindex(users, fill_value=0).to_numpy())
    night_s = safe(night.reindex(users, fill_value=0).to_numpy(), n_bets.to_numpy())
    weekend_s = safe(weekend.reindex(users, fill_value=0).to_numpy(), n_bets.to_numpy())
    promo = (col("cashback", "sum") + col("bonus", "sum")).to_numpy()
    deposit = col("deposit", "sum").to_numpy()
    promo_s = safe(promo, promo + deposit)
    avg_dep = safe(deposit, col("deposit", "count").to_numpy())
    x = np.column_stack([
        shares * SHARE_W,
        robust(np.log1p(ticket), 1.0),
        robust(np.log1p(per_day), VOLUME_W),
        night_s * SHARE_W,
        weekend_s * SHARE_W,
        promo_s * PROMO_W,
        robust(np.log1p(avg_dep), VOLUME_W),
        robust(np.log1p(n_bets.to_numpy()), VOLUME_W),
    ])
    return users, x


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", default="/tmp/farol-segment-bench")
    ap.add_argument("--hdbscan", action="store_true")
    ap.add_argument("--min-cluster-size", type=int, default=2000)
    ap.add_argument("--min-samples", type=int, default=10)
    a = ap.parse_args()
    t0 = time.time()
    df = pd.read_parquet(f"{a.dir}/transactions", columns=["transaction_id", "user_id", "created_at", "type", "game_type", "amount"])
    df = df.drop_duplicates("transaction_id")
    if df["created_at"].dt.tz is None:
        df["created_at"] = df["created_at"].dt.tz_localize("UTC")
    read_s = time.time() - t0
    t1 = time.time()
    users, x = features(df)
    del df
    features_s = time.time() - t1
    print(f"read: {read_s:.2f} s, features: {features_s:.2f} s ({x.shape[0]} x {x.shape[1]})", flush=True)
    planted = pd.read_csv(f"{a.dir}/planted.csv").set_index("user_id")["segment"].reindex(users).to_numpy()
    t2 = time.time()
    best = None
    for k in range(3, 11):
        km = KMeans(n_clusters=k, n_init=4, random_state=42).fit(x)
        s = silhouette_score(x, km.labels_, sample_size=min(5000, len(x)), random_state=42)
        print(f"  k={k} silhouette={s:.3f}", flush=True)
        if best is None or s > best[0]:
            best = (s, k, km.labels_)
    kmeans_s = time.time() - t2
    ari = adjusted_rand_score(planted, best[2])
    total = time.time() - t0
    print(f"KMeans auto-k: {kmeans_s:.2f} s, k = {best[1]}, ARI = {ari:.4f}; total {total:.2f} s")
    result = {"read_s": read_s, "features_s": features_s, "kmeans_s": kmeans_s, "pipeline_s": total,
              "k": best[1], "kmeans_ari": round(ari, 4)}
    if a.hdbscan:
        from sklearn.cluster import HDBSCAN
        t3 = time.time()
        labels = HDBSCAN(min_cluster_size=a.min_cluster_size, min_samples=a.min_samples).fit_predict(x)
        keep = labels >= 0
        result["hdbscan_s"] = time.time() - t3
        result["hdbscan_ari"] = round(adjusted_rand_score(planted[keep], labels[keep]), 4)
        result["hdbscan_noise"] = round(1 - keep.mean(), 4)
        print(f"HDBSCAN: {result['hdbscan_s']:.2f} s, ARI on non-noise {result['hdbscan_ari']}")
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()
