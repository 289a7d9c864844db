"""The core of Vigil's processor as an Apache Flink job (PyFlink DataStream API, a local
mini-cluster): per-patient keyed state with the latest blood pressure by event time, the
hypertensive-crisis rule with episodes (raised once while the latest reading breaches, resolved
when it no longer does), and per-patient counts of face-to-face follow-ups per quarter.

`vigil bench --only peer` runs it over the same events as Vigil's engine (one canonical event
per line, as JSON) and compares the episodes. Prints one JSON object: the episodes, the counts
written, and the CPU seconds and peak memory of every process of the job.

    python flink_job.py EVENTS.jsonl OUTPUT_DIR
"""

import json
import os
import resource
import sys
import time

from pyflink.common import Configuration, Types, WatermarkStrategy
from pyflink.common.serialization import Encoder
from pyflink.datastream import RuntimeExecutionMode, StreamExecutionEnvironment
from pyflink.datastream.connectors.file_system import FileSink, FileSource, StreamFormat
from pyflink.datastream.functions import KeyedProcessFunction, RuntimeContext
from pyflink.datastream.state import ValueStateDescriptor

# The rule as Vigil's default rules file has it (processors/rules/default.toml).
CRISIS_SYSTOLIC = 180.0
CRISIS_DIASTOLIC = 110.0
DAY_MS = 86_400_000


def parse(line):
    """(patient, time_ms, systolic or -1, diastolic or -1, face-to-face follow-up, quarter)."""
    event = json.loads(line)
    payload = event["payload"]
    patient = event["patient_pseudonym"]
    time_ms = event["event_time_ms"]
    body = payload.get("VitalSign") or payload.get("FollowUpVisit")
    if body is None:
        return patient, time_ms, -1.0, -1.0, False, 0
    sbp, dbp = body.get("systolic_mmhg"), body.get("diastolic_mmhg")
    both = sbp is not None and dbp is not None
    follow_up = payload.get("FollowUpVisit")
    face_to_face = follow_up is not None and follow_up["visit_mode"] in ("CLINIC", "HOME")
    quarter = quarter_of(time_ms) if face_to_face else 0
    return (
        patient,
        time_ms,
        float(sbp) if both else -1.0,
        float(dbp) if both else -1.0,
        face_to_face,
        quarter,
    )


def quarter_of(time_ms):
    """Quarters since 1970 (UTC+8, the reporting zone of Vigil's default configuration)."""
    days = (time_ms + 8 * 3_600_000) // DAY_MS
    year, month, _ = civil_from_days(days)
    return year * 4 + (month - 1) // 3


def civil_from_days(z):
    z += 719_468
    era = (z if z >= 0 else z - 146_096) // 146_097
    doe = z - era * 146_097
    yoe = (doe - doe // 1460 + doe // 36_524 - doe // 146_096) // 365
    y = yoe + era * 400
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + 3 if mp < 10 else mp - 9
    return (y + 1 if m <= 2 else y), m, d


class CrisisAndFollowUps(KeyedProcessFunction):
    """One value of state per patient: (time of the latest reading, its systolic, its
    diastolic, when the open episode opened or -1, follow-ups per quarter)."""

    def open(self, runtime_context: RuntimeContext):
        self.patient = runtime_context.get_state(
            ValueStateDescriptor("patient", Types.PICKLED_BYTE_ARRAY())
        )

    def process_element(self, value, ctx):
        patient, time_ms, sbp, dbp, face_to_face, quarter = value
        state = self.patient.value()
        if state is None:
            state = [None, -1, {}]
        latest, opened, follow_ups = state
        if face_to_face:
            count = follow_ups.get(quarter, 0) + 1
            follow_ups[quarter] = count
            yield "F,%s,%d,%d" % (patient, quarter, count)
        if sbp >= 0:
            if latest is None or time_ms >= latest[0]:
                latest = (time_ms, sbp, dbp)
            breach = latest[1] >= CRISIS_SYSTOLIC or latest[2] >= CRISIS_DIASTOLIC
            if breach and opened < 0:
                opened = time_ms
                yield "O,%s,%d" % (patient, time_ms)
            elif not breach and opened >= 0:
                yield "R,%s,%d,%d" % (patient, opened, time_ms)
                opened = -1
        self.patient.update([latest, opened, follow_ups])


def descendants(pid):
    """Every process below `pid` (the JVM of the mini-cluster and its Python workers)."""
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(entry))
        except OSError:
            continue
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def usage(pid):
    """(CPU seconds, peak resident MiB) of a live process, with the CPU of the children it
    reaped (the Python workers, gone once the job finished)."""
    ticks = os.sysconf("SC_CLK_TCK")
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    cpu = sum(int(fields[i]) for i in (11, 12, 13, 14)) / ticks
    peak = 0.0
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                peak = int(line.split()[1]) / 1024
    return cpu, peak


def read_outputs(output):
    """The episodes, (patient, opened at) -> resolved at or None while open; and how many
    follow-up counts were written."""
    found, counts = {}, 0
    for folder, _, files in os.walk(output):
        for name in files:
            if name.startswith("."):
                continue  # a part file never committed
            with open(os.path.join(folder, name)) as f:
                for line in f:
                    parts = line.strip().split(",")
                    if parts[0] == "F":
                        counts += 1
                    elif parts[0] == "O":
                        found.setdefault((parts[1], int(parts[2])), None)
                    elif parts[0] == "R":
                        found[(parts[1], int(parts[2]))] = int(parts[3])
    return found, counts


def main():
    events, output = sys.argv[1], sys.argv[2]
    started = time.monotonic()
    # PyFlink's defaults tuned for this job, in Flink's favour: keyed state cached for every
    # patient in the Python worker (the default of 1,000 keys sends most reads to the JVM and
    # back), and smaller bundles between the JVM and the worker: about twice as fast as the
    # defaults here. The state is one value per patient for the same reason (a MapState of
    # quarters made each follow-up a round trip: 4x slower again).
    settings = Configuration()
    settings.set_string("python.state.cache-size", "1000000")
    settings.set_string("python.fn-execution.bundle.size", "10000")
    settings.set_string("python.fn-execution.bundle.time", "100")
    env = StreamExecutionEnvironment.get_execution_environment(settings)
    env.set_runtime_mode(RuntimeExecutionMode.STREAMING)
    # The Python workers run in this interpreter's environment (the bench's venv).
    env.set_python_executable(sys.executable)
    # One task slot: the figure is compared with Vigil's engine on one core.
    env.set_parallelism(1)
    # The counts' files are committed at checkpoints (and at the end of the input).
    env.enable_checkpointing(1000)
    source = FileSource.for_record_stream_format(StreamFormat.text_line_format(), events).build()
    lines = env.from_source(source, WatermarkStrategy.no_watermarks(), "canonical events")
    parsed = lines.map(
        parse,
        output_type=Types.TUPLE(
            [Types.STRING(), Types.LONG(), Types.DOUBLE(), Types.DOUBLE(), Types.BOOLEAN(), Types.INT()]
        ),
    )
    outputs = parsed.key_by(lambda e: e[0], key_type=Types.STRING()).process(
        CrisisAndFollowUps(), output_type=Types.STRING()
    )
    # Episodes and counts both land in files, committed by the checkpoint at the input's end.
    outputs.sink_to(FileSink.for_row_format(output, Encoder.simple_string_encoder()).build())
    env.execute("vigil peer: crisis episodes and follow-up counts")
    found, counts = read_outputs(output)
    elapsed = time.monotonic() - started
    # The gateway's JVM is still alive here; its Python workers have exited, their CPU counted in
    # the JVM's reaped children.
    processes = [usage(pid) for pid in descendants(os.getpid())]
    own = resource.getrusage(resource.RUSAGE_SELF)
    cpu = own.ru_utime + own.ru_stime + sum(c for c, _ in processes)
    peak = own.ru_maxrss / 1024 + sum(p for _, p in processes)
    print(json.dumps({
        "wall_seconds": elapsed,
        "cpu_seconds": cpu,
        "peak_rss_mib": peak,
        "processes": len(processes) + 1,
        "follow_up_counts": counts,
        "episodes": sorted([p, start, end] for (p, start), end in found.items()),
    }))


if __name__ == "__main__":
    main()
