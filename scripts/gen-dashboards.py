#!/usr/bin/env python3
"""Writes the Grafana dashboards of dashboards/*.json from the panel lists below.

The JSON files are what Grafana loads and what tests/dashboards.rs checks; this script only
saves hand-editing of repetitive JSON. Regenerate with: python3 scripts/gen-dashboards.py
"""
import json
import os

PROM = {"type": "prometheus", "uid": "${ds_prom}"}
INFLUX = {"type": "influxdb", "uid": "${ds_influx}"}

STATE_MAPPING = [{
    "type": "value",
    "options": {
        "0": {"text": "Opérationnel", "color": "green", "index": 0},
        "1": {"text": "Dégradé", "color": "orange", "index": 1},
        "2": {"text": "Sur secours", "color": "purple", "index": 2},
        "3": {"text": "Hors service", "color": "red", "index": 3},
        "4": {"text": "Sonde muette", "color": "#4d4d4d", "index": 4},
        "5": {"text": "Inconnu", "color": "#6b7785", "index": 5},
    },
}]


def ds_vars():
    return [
        {"name": "ds_prom", "label": "Prometheus", "type": "datasource", "query": "prometheus",
         "current": {}, "hide": 0, "refresh": 1, "regex": "", "options": []},
        {"name": "ds_influx", "label": "InfluxDB", "type": "datasource", "query": "influxdb",
         "current": {}, "hide": 0, "refresh": 1, "regex": "", "options": []},
    ]


def prom_var(name, label, metric, label_name):
    q = f"label_values({metric}, {label_name})"
    return {"name": name, "label": label, "type": "query", "datasource": PROM,
            "query": {"query": q, "refId": "PrometheusVariableQueryEditor-VariableQuery", "qryType": 1},
            "definition": q, "refresh": 2, "sort": 1, "includeAll": False, "multi": False,
            "current": {}, "hide": 0, "options": [], "regex": ""}


class Board:
    def __init__(self, uid, title, description, variables):
        self.d = {
            "uid": uid, "title": title, "description": description, "tags": ["rie", "noc"],
            "timezone": "browser", "schemaVersion": 39, "version": 1, "editable": True,
            "refresh": "30s", "time": {"from": "now-6h", "to": "now"},
            "templating": {"list": ds_vars() + variables},
            "annotations": {"list": []}, "links": [
                {"title": "Tableaux RIE", "type": "dashboards", "tags": ["rie"], "asDropdown": True}],
            "panels": [],
        }
        self.x = 0
        self.y = 0
        self.row_h = 0

    def panel(self, kind, title, targets, w=6, h=5, unit=None, desc="", extra=None):
        if self.x + w > 24:
            self.x = 0
            self.y += self.row_h
            self.row_h = 0
        ds = targets[0][0]
        p = {
            "id": len(self.d["panels"]) + 1, "type": kind, "title": title, "description": desc,
            "datasource": ds, "gridPos": {"x": self.x, "y": self.y, "w": w, "h": h},
            "fieldConfig": {"defaults": {}, "overrides": []}, "options": {}, "targets": [],
        }
        if unit:
            p["fieldConfig"]["defaults"]["unit"] = unit
        for i, (tds, q, fmt) in enumerate(targets):
            ref = chr(ord("A") + i)
            if tds is PROM:
                t = {"refId": ref, "datasource": PROM, "expr": q, "legendFormat": "__auto",
                     "instant": kind in ("stat", "table", "bargauge"), "range": kind not in ("stat", "table", "bargauge")}
                if fmt:
                    t["format"] = fmt
            else:
                t = {"refId": ref, "datasource": INFLUX, "query": q, "rawQuery": True,
                     "resultFormat": fmt or "time_series"}
            p["targets"].append(t)
        if extra:
            for k, v in extra.items():
                if k == "defaults":
                    p["fieldConfig"]["defaults"].update(v)
                else:
                    p[k] = v
        self.d["panels"].append(p)
        self.x += w
        self.row_h = max(self.row_h, h)

    def newline(self):
        if self.x:
            self.x = 0
            self.y += self.row_h
            self.row_h = 0

    def save(self, path):
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self.d, f, ensure_ascii=False, indent=2)
            f.write("\n")


STAT = {"options": {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                    "colorMode": "value", "graphMode": "none", "textMode": "auto"}}
TABLE = {"options": {"showHeader": True}}


def national():
    b = Board("rie-national", "RIE — Vue nationale",
              "État des 14 000 sites du RIE : combien sont hors service, sur secours, dégradés ou muets, et combien d'agents sont touchés.",
              [])
    names = ["Opérationnels", "Dégradés", "Sur secours", "Hors service", "Sondes muettes"]
    for code, name in enumerate(names):
        b.panel("stat", f"Sites {name.lower()}", [(PROM, f"count(rie_site_state == {code}) or vector(0)", None)],
                w=4, h=4, extra=STAT)
    b.panel("stat", "Agents privés de réseau", [(PROM, ":rie_agents_down:sum or vector(0)", None)], w=4, h=4,
            desc="Agents des sites hors service (aucun lien n'atteint le cœur).", extra=STAT)
    b.newline()
    b.panel("timeseries", "Sites par état", [(PROM, "sum by (state) (ministry_departement:rie_sites:count)", None)],
            w=12, h=8, desc="Nombre de sites dans chaque état (règles d'enregistrement Prometheus).")
    b.panel("timeseries", "Agents privés de réseau par ministère", [(PROM, "ministry:rie_agents_down:sum", None)], w=12, h=8)
    b.panel("table", "Sites en incident, par agents touchés",
            [(PROM, "sort_desc(rie_site_agents and on (site) (rie_site_state > 0 and rie_site_state < 5))", "table")],
            w=12, h=10, desc="Sites dégradés, sur secours, hors service ou muets ; valeur = agents du site.", extra=TABLE)
    b.panel("table", "Départements : sites injoignables (hors service ou muets) et agents touchés",
            [(PROM, "sort_desc(departement:rie_agents_unreachable:sum)", "table"),
             (PROM, "departement:rie_sites_unreachable:count", "table"),
             (PROM, "departement:rie_sites_down:count", "table")], w=12, h=10,
            desc="Un site coupé du réseau ne peut plus rien envoyer : il apparaît d'abord muet.", extra=TABLE)
    b.panel("timeseries", "Disponibilité nationale (part des relevés « joignable »)",
            [(INFLUX, 'SELECT mean("up") * 100 AS "disponibilité" FROM "site_state" WHERE $timeFilter GROUP BY time($__interval) fill(none)', None)],
            w=12, h=8, unit="percent")
    b.panel("timeseries", "Trafic national par protocole",
            [(INFLUX, 'SELECT sum("bytes") FROM "site_traffic" WHERE $timeFilter GROUP BY time($__interval), "protocol" fill(0)', None)],
            w=12, h=8, unit="decbytes", desc="Octets par intervalle d'affichage, tous sites.")
    b.panel("timeseries", "Épisodes commencés, par type",
            [(INFLUX, 'SELECT count("duration_s") FROM "episode" WHERE $timeFilter GROUP BY time($__interval), "kind" fill(0)', None)],
            w=24, h=7)
    return b


def ministry():
    b = Board("rie-ministere", "RIE — Vue ministère",
              "Les sites d'un ministère : états, agents touchés, incidents en cours, trafic et disponibilité.",
              [prom_var("ministry", "Ministère", "rie_site_agents", "ministry")])
    b.panel("bargauge", "Sites par état", [(PROM, 'sum by (state) (ministry_departement:rie_sites:count{ministry="$ministry"})', None)],
            w=12, h=6, extra={"options": {"orientation": "horizontal", "displayMode": "basic",
                                          "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}}})
    b.panel("stat", "Agents privés de réseau", [(PROM, 'sum(ministry_departement:rie_agents_down:sum{ministry="$ministry"}) or vector(0)', None)],
            w=6, h=6, extra=STAT)
    b.panel("stat", "Agents sur lien de secours", [(PROM, 'sum(ministry_departement:rie_agents_on_backup:sum{ministry="$ministry"}) or vector(0)', None)],
            w=6, h=6, extra=STAT)
    b.panel("table", "Sites en incident, par agents touchés",
            [(PROM, 'sort_desc(rie_site_agents{ministry="$ministry"} and on (site) (rie_site_state > 0 and rie_site_state < 5))', "table")],
            w=24, h=9, extra=TABLE)
    b.panel("timeseries", "Disponibilité du ministère",
            [(INFLUX, 'SELECT mean("up") * 100 AS "disponibilité" FROM "site_state" WHERE "ministry" = \'$ministry\' AND $timeFilter GROUP BY time($__interval) fill(none)', None)],
            w=12, h=8, unit="percent")
    b.panel("timeseries", "Trafic par département",
            [(INFLUX, 'SELECT sum("bytes") FROM "site_traffic" WHERE "ministry" = \'$ministry\' AND $timeFilter GROUP BY time($__interval), "departement" fill(0)', None)],
            w=12, h=8, unit="decbytes")
    b.panel("table", "Épisodes sur la période, par type",
            [(INFLUX, 'SELECT count("duration_s") AS "épisodes", sum("duration_s") AS "durée totale (s)" FROM "episode" WHERE "ministry" = \'$ministry\' AND $timeFilter GROUP BY "kind"', "table")],
            w=24, h=6, extra=TABLE)
    return b


def site():
    b = Board("rie-site", "RIE — Site",
              "Un site : état, liens, latence et pertes, trafic par protocole, historique des épisodes.",
              [prom_var("site", "Site", "rie_site_agents", "site")])
    b.panel("stat", "État", [(PROM, 'rie_site_state{site="$site"}', None)], w=6, h=4,
            extra={**STAT, "defaults": {"mappings": STATE_MAPPING}})
    b.panel("stat", "Agents", [(PROM, 'rie_site_agents{site="$site"}', None)], w=6, h=4, extra=STAT)
    b.panel("stat", "Dernier signe de vie (il y a)", [(PROM, 'time() - rie_site_last_report_timestamp_seconds{site="$site"}', None)],
            w=6, h=4, unit="s", extra=STAT)
    b.panel("stat", "Décalage d'horloge de la sonde", [(PROM, 'rie_site_clock_offset_seconds{site="$site"}', None)],
            w=6, h=4, unit="s", extra=STAT)
    b.panel("table", "Liens (dernières mesures)",
            [(PROM, 'rie_link_up{site="$site"}', "table"), (PROM, 'rie_link_rtt_seconds{site="$site"}', "table"),
             (PROM, 'rie_link_loss_ratio{site="$site"}', "table")], w=24, h=6, extra=TABLE)
    b.panel("state-timeline", "Historique d'état",
            [(INFLUX, 'SELECT last("state_code") AS "état" FROM "site_state" WHERE "site" = \'$site\' AND $timeFilter GROUP BY time($__interval) fill(previous)', None)],
            w=24, h=5, extra={"defaults": {"mappings": STATE_MAPPING}})
    b.panel("timeseries", "Temps d'aller-retour moyen par lien",
            [(INFLUX, 'SELECT mean("rtt_avg_ms") FROM "link_check" WHERE "site" = \'$site\' AND $timeFilter GROUP BY time($__interval), "link" fill(none)', None)],
            w=12, h=8, unit="ms")
    b.panel("timeseries", "Pertes par lien",
            [(INFLUX, 'SELECT mean("loss_ratio") * 100 FROM "link_check" WHERE "site" = \'$site\' AND $timeFilter GROUP BY time($__interval), "link" fill(none)', None)],
            w=12, h=8, unit="percent")
    b.panel("timeseries", "Trafic par protocole",
            [(INFLUX, 'SELECT sum("bytes") FROM "site_traffic" WHERE "site" = \'$site\' AND $timeFilter GROUP BY time($__interval), "protocol" fill(0)', None)],
            w=24, h=8, unit="decbytes")
    b.panel("table", "Épisodes",
            [(INFLUX, 'SELECT "kind", "link", "duration_s", "open", "cause" FROM "episode" WHERE "site" = \'$site\' AND $timeFilter', "table")],
            w=24, h=8, extra=TABLE)
    return b


def collector():
    b = Board("rie-collecteur", "RIE — Santé du collecteur",
              "Le collecteur lui-même : connexions de sondes, lots reçus, erreurs, base, arriéré InfluxDB.", [])
    b.panel("stat", "Collecteurs joignables", [(PROM, 'sum(up{job="rie-collector"})', None)], w=4, h=4, extra=STAT)
    b.panel("stat", "Sondes connectées", [(PROM, "sum(rie_collector_probe_connections)", None)], w=4, h=4, extra=STAT)
    b.panel("stat", "Lots stockés par seconde", [(PROM, "sum(rate(rie_collector_probe_batches_total[$__rate_interval]))", None)],
            w=4, h=4, unit="reqps", extra=STAT)
    b.panel("stat", "Échecs d'écriture de la base (5 min)", [(PROM, "sum(increase(rie_collector_store_errors_total[5m]))", None)],
            w=4, h=4, extra=STAT)
    b.panel("stat", "Lots reçus en double par seconde", [(PROM, "sum(rate(rie_collector_duplicate_batches_total[$__rate_interval]))", None)],
            w=4, h=4, extra=STAT)
    b.panel("stat", "Trous de séquence (1 h)", [(PROM, "sum(increase(rie_collector_sequence_gaps_total[1h]))", None)],
            w=4, h=4, extra=STAT)
    b.panel("timeseries", "Trames invalides par motif", [(PROM, "sum by (reason) (rate(rie_collector_frame_errors_total[$__rate_interval]))", None)],
            w=8, h=8, unit="reqps")
    b.panel("timeseries", "Enregistrements rejetés par motif", [(PROM, "sum by (reason) (rate(rie_collector_invalid_records_total[$__rate_interval]))", None)],
            w=8, h=8, unit="reqps")
    b.panel("timeseries", "Authentifications refusées par motif", [(PROM, "sum by (reason) (rate(rie_collector_auth_failures_total[$__rate_interval]))", None)],
            w=8, h=8, unit="reqps")
    b.panel("timeseries", "Durée d'un commit groupé (p50, p99)",
            [(PROM, "histogram_quantile(0.5, sum by (le) (rate(rie_collector_store_commit_seconds_bucket[$__rate_interval])))", None),
             (PROM, "histogram_quantile(0.99, sum by (le) (rate(rie_collector_store_commit_seconds_bucket[$__rate_interval])))", None)],
            w=12, h=8, unit="s")
    b.panel("timeseries", "Sites par état (vu par le collecteur)", [(PROM, "sum by (state) (rie_collector_sites)", None)], w=12, h=8)
    b.panel("timeseries", "Arriéré d'écriture InfluxDB (relevé par le collecteur)",
            [(INFLUX, 'SELECT last("points_buffered") FROM "collector" WHERE $timeFilter GROUP BY time($__interval), "instance" fill(none)', None)],
            w=12, h=8, desc="Points en attente d'écriture, mémoire et disque (mesure « collector » du schéma InfluxDB).")
    b.panel("timeseries", "Connexions de sondes (relevé InfluxDB)",
            [(INFLUX, 'SELECT last("connections") FROM "collector" WHERE $timeFilter GROUP BY time($__interval), "instance" fill(none)', None)],
            w=12, h=8)
    return b


# The finance measurements are written by the collector's finance duty (collector/src/finance.rs)
# once per finance.interval; each point holds the current month to date, so panels take the
# last value of the time range.
def cost_last(field, scope="national"):
    return f'SELECT last("{field}") FROM "cost" WHERE "scope" = \'{scope}\' AND $timeFilter'


def with_reference(targets_a):
    """A series per group plus the cost model's reference (target B) drawn as a dashed red line."""
    return targets_a + [(INFLUX, 'SELECT last("reference_eur_per_agent_year") AS "référence" FROM "cost" WHERE "scope" = \'national\' AND $timeFilter GROUP BY time($__interval) fill(previous)', None)]


REF_OVERRIDE = {"overrides": [{
    "matcher": {"id": "byFrameRefID", "options": "B"},
    "properties": [
        {"id": "displayName", "value": "Référence (modèle de coûts)"},
        {"id": "color", "value": {"mode": "fixed", "fixedColor": "red"}},
        {"id": "custom.lineStyle", "value": {"fill": "dash", "dash": [10, 10]}},
        {"id": "custom.lineWidth", "value": 2},
    ],
}]}

def finance():
    b = Board("rie-finance", "RIE — Finances",
              "Coût du RIE par agent et par an (liens d'accès et coûts nationaux répartis), part de la résilience, heures-agent perdues et leur coût, pour le mois en cours ; mêmes chiffres que le rapport financier (rie-collector report).",
              [])
    b.d["tags"] = ["rie", "finance"]
    b.d["time"] = {"from": "now-30d", "to": "now"}
    b.d["refresh"] = "15m"
    eur = "currencyEUR"
    b.panel("stat", "Coût par agent et par an (national)", [(INFLUX, cost_last("cost_per_agent_year_eur"), None)],
            w=4, h=4, unit=eur, desc="Mois en cours, annualisé : (liens + coûts nationaux répartis) × 12 / agents.", extra=STAT)
    b.panel("stat", "Référence par agent et par an", [(INFLUX, cost_last("reference_eur_per_agent_year"), None)],
            w=4, h=4, unit=eur, desc="reference_eur_per_agent_year du modèle de coûts (feuille de route DINUM 2023 : environ 100 €).", extra=STAT)
    b.panel("stat", "Résilience par agent et par an", [(INFLUX, cost_last("resilience_cost_per_agent_year_eur"), None)],
            w=4, h=4, unit=eur, desc="Liens de secours, par agent et par an.", extra=STAT)
    b.panel("stat", "Part de la résilience dans le coût par agent", [(INFLUX, cost_last("resilience_share_pct"), None)],
            w=4, h=4, unit="percent", extra=STAT)
    b.panel("stat", "Heures-agent perdues (mois en cours)", [(INFLUX, cost_last("agent_hours_lost"), None)],
            w=4, h=4, desc="Σ agents × heures de coupure des sites, depuis le début du mois.", extra=STAT)
    b.panel("stat", "Coût des heures-agent perdues", [(INFLUX, cost_last("agent_hours_lost_cost_eur"), None)],
            w=4, h=4, unit=eur, desc="Heures-agent perdues × agent_hour_cost_eur du modèle de coûts.", extra=STAT)
    b.newline()
    b.panel("timeseries", "Coût par agent et par an, par ministère, et la référence",
            with_reference([(INFLUX, 'SELECT last("cost_per_agent_year_eur") FROM "cost" WHERE "scope" = \'ministry\' AND $timeFilter GROUP BY time($__interval), "ministry" fill(previous)', None)]),
            w=12, h=9, unit=eur, extra={"fieldConfig": {"defaults": {"unit": eur}, **REF_OVERRIDE}})
    b.panel("timeseries", "Coût par agent et par an, par région, et la référence",
            with_reference([(INFLUX, 'SELECT last("cost_per_agent_year_eur") FROM "cost" WHERE "scope" = \'region\' AND $timeFilter GROUP BY time($__interval), "region" fill(previous)', None)]),
            w=12, h=9, unit=eur, extra={"fieldConfig": {"defaults": {"unit": eur}, **REF_OVERRIDE}})
    table_q = ('SELECT last("agents") AS "agents", last("cost_per_agent_year_eur") AS "€/agent/an", '
               'last("resilience_cost_per_agent_year_eur") AS "résilience €/agent/an", last("resilience_share_pct") AS "part résilience %", '
               'last("agent_hours_lost") AS "heures-agent perdues", last("agent_hours_lost_cost_eur") AS "coût des heures perdues €", '
               'last("total_cost_eur") AS "coût du mois €" FROM "cost" WHERE "scope" = \'{scope}\' AND $timeFilter GROUP BY "{scope}"')
    b.panel("table", "Par ministère (mois en cours)", [(INFLUX, table_q.format(scope="ministry"), "table")],
            w=12, h=9, extra=TABLE)
    b.panel("table", "Par région (mois en cours)", [(INFLUX, table_q.format(scope="region"), "table")],
            w=12, h=9, extra=TABLE)
    b.panel("bargauge", "Coût par agent et par an, par ministère (Prometheus)",
            [(PROM, 'sort_desc(max by (group) (rie_finance_cost_per_agent_year_euros{by="ministry"}))', None)],
            w=12, h=9, unit=eur, desc="Les mêmes chiffres exposés par le collecteur meneur (rie_finance_*).",
            extra={"options": {"orientation": "horizontal", "displayMode": "basic",
                               "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}}})
    b.panel("timeseries", "Heures-agent perdues par ministère (cumul du mois)",
            [(INFLUX, 'SELECT last("agent_hours_lost") FROM "cost" WHERE "scope" = \'ministry\' AND $timeFilter GROUP BY time($__interval), "ministry" fill(previous)', None)],
            w=12, h=9)
    b.panel("table", "Sites les plus chers par agent (mois en cours)",
            [(INFLUX, 'SELECT last("site") AS "site", last("ministry") AS "ministère", last("region") AS "région", last("agents") AS "agents", last("cost_per_agent_year_eur") AS "€/agent/an", last("total_cost_eur") AS "coût du mois €" FROM "cost_top_site" WHERE $timeFilter GROUP BY "rank"', "table")],
            w=24, h=10, desc="Les finance.top_sites sites au coût par agent le plus élevé (rang 1 : le plus cher).", extra=TABLE)
    b.panel("table", "Investissements de résilience prioritaires (30 derniers jours, annualisés)",
            [(INFLUX, 'SELECT last("site") AS "site", last("ministry") AS "ministère", last("region") AS "région", last("technology") AS "secours proposé", last("agents") AS "agents", last("yearly_cost_eur") AS "coût €/an", last("value_per_year_eur") AS "heures-agent rachetées €/an", last("net_benefit_per_year_eur") AS "bénéfice net €/an" FROM "resilience_plan" WHERE $timeFilter GROUP BY "rank"', "table")],
            w=24, h=10, desc="Classement du planificateur d'investissements de résilience par bénéfice net (mesure resilience_plan ; détail : rie-collector report resilience).", extra=TABLE)
    return b


if __name__ == "__main__":
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "dashboards")
    for name, f in [("national", national), ("ministere", ministry), ("site", site), ("collecteur", collector), ("finance", finance)]:
        f().save(os.path.join(out, f"rie-{name}.json"))
