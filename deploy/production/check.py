#!/usr/bin/env python3
"""Checks that deploy/production describes a deployment Vigil can run: every setting and
environment variable it names exists (`vigil config` over vigil.toml), every file compose.yaml
mounts exists once make-secrets.sh ran, and the topics and Kafka users agree across topics.sh,
kafka/setup.sh, kubernetes/kafka.yaml and vigil.toml. Prints each problem; exits 1 if any.

    deploy/production/check.py VIGIL_BINARY SECRETS_DIR
(SECRETS_DIR: where make-secrets.sh wrote its files.)"""

import glob
import os
import re
import subprocess
import sys
import tomllib

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
# Variables that are not settings: what reads each.
OTHERS = {
    "VIGIL_CONFIG": "vigil's --config",
    "VIGIL_PSEUDONYM_KEY": "the edge's key (edge.pseudonym_key_file otherwise)",
    "VIGIL_VERSION": "compose.yaml's image tag",
    "VIGIL_CLICKHOUSE_HOST": "Grafana's data source",
    "VIGIL_CLICKHOUSE_HTTP_PORT": "Grafana's data source",
    "VIGIL_CLICKHOUSE_SECURE": "Grafana's data source",
    "VIGIL_COMMISSION_PASSWORD": "Grafana's data source",
}
# ClickHouse role passwords: vigil reads the first three (clickhouse.credentials_file), grants.sql
# and Grafana the people's.
ROLES = {"ADMIN", "WRITER", "READER", "COMMISSION", "INSURANCE"}


def files():
    names = ["compose.yaml", "make-secrets.sh", "topics.sh", "kafka/setup.sh", "Dockerfile",
             "README.md", "vigil.toml", "kustomization.yaml"]
    names += [os.path.relpath(p, HERE) for p in glob.glob(os.path.join(HERE, "kubernetes", "*.yaml"))]
    return {name: open(os.path.join(HERE, name), encoding="utf-8").read() for name in names}


def settings(vigil):
    out = subprocess.run([vigil, "config", "--config", os.path.join(HERE, "vigil.toml")],
                         capture_output=True, text=True, env={"PATH": os.environ.get("PATH", "")})
    if out.returncode != 0:
        sys.exit(f"vigil config refused deploy/production/vigil.toml:\n{out.stderr}")
    return tomllib.loads(out.stdout)


def setting_exists(config, variable):
    node = config
    for part in variable[len("VIGIL_"):].lower().split("__"):
        if not isinstance(node, dict) or part not in node:
            return False
        if part == "client_properties":
            return True  # librdkafka's own properties, any name
        node = node[part]
    return True


def variables(texts, config, problems):
    defined_by_secrets = set(re.findall(r"VIGIL_KAFKA_([A-Z]+)_PASSWORD", texts["make-secrets.sh"]))
    for name, text in texts.items():
        found = {m.group(0) for m in re.finditer(r"\bVIGIL_[A-Z0-9_]*[A-Z0-9]", text)
                 if text[m.end():m.end() + 2] not in ("_%", "_<", "_$")}  # a name's template
        for variable in sorted(found):
            if "__" in variable:
                ok = setting_exists(config, variable)
            elif m := re.fullmatch(r"VIGIL_CH_([A-Z]+)_PASSWORD", variable):
                ok = m.group(1) in ROLES
            elif m := re.fullmatch(r"VIGIL_KAFKA_([A-Z]+)_PASSWORD", variable):
                ok = m.group(1) in defined_by_secrets
            else:
                ok = variable in OTHERS
            if not ok:
                problems.append(f"{name}: {variable} is no setting of `vigil config` and nothing reads it")


def mounts(compose, secrets_dir, problems):
    if not os.path.exists(os.path.join(secrets_dir, "secrets", "clickhouse", "credentials.env")):
        problems.append(f"{secrets_dir} holds no secrets: run make-secrets.sh there first")
    for service, spec in compose["services"].items():
        env_files = spec.get("env_file", [])
        paths = [env_files] if isinstance(env_files, str) else list(env_files)
        for volume in spec.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                paths.append(source)
        for path in paths:
            if path.startswith("./secrets/") or path.startswith("./tls/") or path in ("./secrets", "./tls"):
                where = os.path.join(secrets_dir, path[2:])
            else:
                where = os.path.join(HERE, path)
            if not os.path.exists(where):
                problems.append(f"compose.yaml: {service} mounts {path}, which does not exist")


def topics(texts, config, problems):
    wanted = set(config["kafka"]["topics"].values())
    script = set(re.findall(r"^topic (\S+)", texts["topics.sh"], re.M))
    documents = [d for d in yaml.safe_load_all(texts["kubernetes/kafka.yaml"]) if d]
    strimzi = {d["spec"]["topicName"]: d["spec"] for d in documents if d["kind"] == "KafkaTopic"}
    for where, names in (("topics.sh", script), ("kubernetes/kafka.yaml", set(strimzi))):
        if names != wanted:
            problems.append(f"{where}: topics {sorted(names ^ wanted)} differ from vigil.toml's")
    partitions = config["kafka"]["partitions"]
    if f"partitions=${{PARTITIONS:-{partitions}}}" not in texts["topics.sh"]:
        problems.append(f"topics.sh: the default partition count is not kafka.partitions ({partitions})")
    for name, spec in strimzi.items():
        if spec["partitions"] != partitions or spec["replicas"] != config["kafka"]["replication_factor"]:
            problems.append(f"kubernetes/kafka.yaml: {name} has other partitions or replicas than vigil.toml")
        if spec["config"].get("min.insync.replicas") != 2:
            problems.append(f"kubernetes/kafka.yaml: {name} is not min.insync.replicas 2")
    topics = config["kafka"]["topics"]
    if strimzi.get(topics["alert_deliveries"], {}).get("config", {}).get("cleanup.policy") != "compact":
        problems.append("kubernetes/kafka.yaml: the deliveries topic is not compacted")
    if strimzi.get(topics["processor_state"], {}).get("config", {}).get("retention.ms") != -1:
        problems.append("kubernetes/kafka.yaml: the changelog is deleted by age")
    users_script = set(re.findall(r"^user (\S+)", texts["kafka/setup.sh"], re.M))
    users_strimzi = {d["metadata"]["name"] for d in documents if d["kind"] == "KafkaUser"}
    if not users_script:
        problems.append("kafka/setup.sh: no Kafka user found (the check would prove nothing)")
    if users_script != users_strimzi:
        problems.append(f"Kafka users differ: setup.sh {sorted(users_script)}, kafka.yaml {sorted(users_strimzi)}")
    named = set(re.findall(r"SASL_USERNAME\W+(?:value: \")?([a-z-]+)", texts["kubernetes/vigil.yaml"]))
    named |= set(re.findall(r"\"(vigil-[a-z]+)\" \"\$VIGIL_KAFKA", texts["make-secrets.sh"]))
    if not named:
        problems.append("no stage's Kafka user found in kubernetes/vigil.yaml or make-secrets.sh")
    for user in named - users_strimzi:
        problems.append(f"a stage signs in as {user}, a Kafka user nobody creates")


def main():
    vigil, secrets_dir = sys.argv[1], sys.argv[2]
    texts = files()
    config = settings(vigil)
    problems = []
    variables(texts, config, problems)
    mounts(yaml.safe_load(texts["compose.yaml"]), secrets_dir, problems)
    topics(texts, config, problems)
    for document in ("kustomization.yaml", "kubernetes/vigil.yaml", "kubernetes/clickhouse.yaml",
                     "kubernetes/grafana.yaml", "kubernetes/namespace.yaml"):
        list(yaml.safe_load_all(texts[document]))  # well-formed
    for problem in problems:
        print(problem)
    print(f"deploy/production: {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
