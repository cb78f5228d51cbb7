"""The ``streamvec`` command: worker, produce, search, embed, model, broker, demo, dead-letters.

Settings come from ``STREAMVEC_*`` variables; a flag given here wins over its variable.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from app.settings import Settings, SettingsError, describe
from streamvec import __version__

if TYPE_CHECKING:
    from app.cli.deadletters import StoredDeadLetter


def _settings(**flags: Any) -> Settings:
    try:
        return Settings.from_env().replace(**flags)
    except SettingsError as exc:
        raise click.UsageError(str(exc)) from None


@click.group(epilog="Settings: " + ", ".join(name for name, _, _ in describe()))
@click.version_option(__version__, prog_name="streamvec")
def main() -> None:
    """Real-time vector search on Kafka: Faust workers embed, index and answer queries."""


@main.command()
@click.option("--web-port", type=int, help="HTTP port (STREAMVEC_WEB_PORT).")
@click.option("--web-host", help="Host other workers reach this one at (STREAMVEC_WEB_HOST).")
@click.option("--datadir", type=click.Path(path_type=Path), help="Local state directory (STREAMVEC_DATADIR).")
@click.option("--broker", help="Kafka bootstrap server (STREAMVEC_BROKER).")
@click.option("-l", "--log-level", help="Log level (STREAMVEC_LOG_LEVEL).")
def worker(web_port: int | None, web_host: str | None, datadir: Path | None, broker: str | None,
           log_level: str | None) -> None:
    """Run a worker: consume events, keep the indexes, serve HTTP."""
    import faust
    import mode.loop

    from app.factory import create_app

    settings = _settings(web_port=web_port, web_host=web_host, datadir=datadir, broker=broker, log_level=log_level)
    if settings.event_loop != "asyncio":
        mode.loop.use(settings.event_loop)  # before Faust creates its loop
    parts = create_app(settings)
    faust.Worker(parts.app, loglevel=settings.log_level).execute_from_commandline()


@main.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--to", "to", type=click.Choice(["events", "watchlist", "activity"]), default="events",
              show_default=True, help="Documents, watchlist patterns (keyed by id) or activity (keyed by user).")
@click.option("--broker", help="Kafka bootstrap server (STREAMVEC_BROKER).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option("--print-offsets", is_flag=True,
              help='Print {"after": {partition: offset}} on stdout: pass it to a search to see these events.')
def produce(file: Path, to: str, broker: str | None, quiet: bool, print_offsets: bool) -> None:
    """Send FILE.jsonl (one record per line) to a topic of the app and wait for every ack."""
    from app.cli.producer import ProduceError, produce as send, read_events
    from app.settings import WATCHLIST_PARTITIONS

    settings = _settings(broker=broker)
    topic, partitions, key_field = {
        "events": (settings.events_topic, settings.partitions, "id"),
        "watchlist": (settings.watchlist_topic, WATCHLIST_PARTITIONS, "id"),
        "activity": (settings.activity_topic, settings.partitions, "user"),
    }[to]
    try:
        lines = read_events(file, key_field)
    except ProduceError as exc:
        raise click.ClickException(str(exc)) from None
    offsets = asyncio.run(send(settings.broker, topic, partitions, lines, progress=not quiet,
                               replication_factor=settings.replication_factor))
    click.echo(f"{len(lines)} records acknowledged on {topic}", err=print_offsets)
    if print_offsets:
        click.echo(json.dumps({"after": {str(p): offset for p, offset in sorted(offsets.items())}}))


@main.command()
@click.argument("text")
@click.option("-k", type=int, default=10, show_default=True, help="How many results.")
@click.option("--filter", "filter_", help='Metadata filter as JSON, e.g. \'{"category": "food"}\'.')
@click.option("--url", default=None, help="A worker's URL (default http://127.0.0.1:$STREAMVEC_WEB_PORT).")
@click.option("--json", "as_json", is_flag=True, help="Print the worker's JSON answer instead of a table.")
def search(text: str, k: int, filter_: str | None, url: str | None, as_json: bool) -> None:
    """Ask a worker for the documents most similar to TEXT."""
    from app.cli.results import format_hits
    from streamvec import Client, StreamvecError

    settings = _settings()
    try:
        query_filter = json.loads(filter_) if filter_ else None
    except ValueError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint="--filter") from None
    url = url or f"http://127.0.0.1:{settings.web_port}"
    try:
        with Client(url, api_key=settings.api_key or None, retries=1) as client:
            answer = client.search(text, k=k, filter=query_filter)
    except StreamvecError as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(json.dumps(answer.raw, ensure_ascii=False, indent=2))
        return
    for line in format_hits(answer.hits):
        click.echo(line)
    if answer.partial:
        click.echo(f"partial answer: partitions {list(answer.coverage.missing)} did not answer", err=True)
    click.echo(f"({len(answer.hits)} results, {answer.took_ms:.1f} ms)", err=True)


@main.command()
@click.option("--batch-size", type=int, default=None, help="Lines per model run (STREAMVEC_EMBED_BATCH_SIZE).")
def embed(batch_size: int | None) -> None:
    """Embed stdin, one text per line, into one JSON array of floats per line (the worker's model settings)."""
    from app.embedding import embedder_from_settings

    settings = _settings(embed_batch_size=batch_size)
    embedder = _model_or_exit(lambda: embedder_from_settings(settings))
    chunk: list[str] = []
    for line in sys.stdin:
        chunk.append(line.rstrip("\n"))
        if len(chunk) == settings.embed_batch_size:
            _write_vectors(embedder.embed(chunk))
            chunk = []
    _write_vectors(embedder.embed(chunk))


@main.group()
def model() -> None:
    """The embedding model in the machine's model cache (STREAMVEC_MODEL, STREAMVEC_MODEL_CACHE)."""


@model.command("prepare")
def prepare_model() -> None:
    """Convert the model (and with STREAMVEC_QUANTIZE=int8 quantise and measure it) into the cache now.

    Workers on this machine then start without converting; one that finds the
    model missing prepares it itself, in a separate process.
    """
    from index.model.models import plan_model
    from index.model.prepare import prepare

    settings = _settings()
    cache = settings.model_cache_dir
    started = time.perf_counter()

    def progress(message: str) -> None:
        click.echo(f"[{time.perf_counter() - started:6.1f} s] {message}", err=True)

    plan = _model_or_exit(lambda: plan_model(settings.model, cache, settings.quantize))
    made = _model_or_exit(lambda: prepare(plan, settings.embed_threads or None, progress))
    state = "prepared" if made else "already prepared"
    click.echo(f"{settings.model} ({settings.quantize}) {state}: {plan.runnable.onnx_path}")


_T = TypeVar("_T")


def _model_or_exit(step: Callable[[], _T]) -> _T:
    """Run a model step; a ModelError (it says what to do) ends the command with its message."""
    from index.exceptions import ModelError

    try:
        return step()
    except ModelError as exc:
        raise click.ClickException(str(exc)) from None


def _write_vectors(vectors: Any) -> None:
    for vector in vectors:
        sys.stdout.write(json.dumps([round(float(x), 7) for x in vector]) + "\n")
    sys.stdout.flush()


@main.command()
@click.argument("action", type=click.Choice(["start", "stop"]))
@click.option("--kind", type=click.Choice(["kafka", "tansu"]), default="kafka", show_default=True,
              help="Apache Kafka (KRaft, jars from `make install`) or Tansu (in memory).")
@click.option("--port", type=int, default=None, help="Client port (default: a free one).")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Broker state, log and pid file (default .streamvec/broker-KIND).")
def broker(action: str, kind: str, port: int | None, data_dir: Path | None) -> None:
    """Start a local broker in the background (returns once it accepts clients) or stop it."""
    from app.brokers.detached import default_data_dir, start_detached, stop_detached
    from app.brokers.process import BrokerError

    data_dir = data_dir or default_data_dir(kind)
    try:
        if action == "start":
            handle = start_detached(kind, port, data_dir)
            click.echo(f"{kind} broker running at {handle.url} (pid {handle.pid}, log {handle.log_path})")
            click.echo(f"use it: export STREAMVEC_BROKER=kafka://{handle.url}")
        else:
            click.echo(f"stopped the broker at {stop_detached(data_dir)}")
    except BrokerError as exc:
        raise click.ClickException(str(exc)) from None


@main.command()
@click.option("--kind", type=click.Choice(["tansu", "kafka"]), default="tansu", show_default=True,
              help="Broker to start: Tansu (in memory, no JVM) or Apache Kafka (needs `make install`).")
@click.option("--data", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Events to load (default: the bundled WordNet sample).")
def demo(kind: str, data: Path | None) -> None:
    """Start a broker and two workers, load sample data, print how to query; Ctrl-C stops all."""
    from app.cli.demo import SAMPLE, run_demo

    run_demo(_settings(), kind, data or SAMPLE)


@main.group("dead-letters")
def dead_letters() -> None:
    """Events the workers could not index (the topic <app id>-dead-letters): list or replay them."""


_reason_option = click.option("--reason", help="Only dead letters with this reason code (e.g. bad_json).")
_broker_option = click.option("--broker", help="Kafka bootstrap server (STREAMVEC_BROKER).")


@dead_letters.command("list")
@_reason_option
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Show only the N most recent.")
@_broker_option
def list_dead_letters(reason: str | None, limit: int | None, broker: str | None) -> None:
    """Print the dead letters, oldest first: where they are, why, and what they held."""
    from app.cli.deadletters import format_table

    settings = _settings(broker=broker)
    letters = _read_dead_letters(settings, reason)
    shown = letters[-limit:] if limit else letters
    for line in format_table(shown):
        click.echo(line)
    click.echo(f"{len(shown)} of {len(letters)} dead letters{_of_reason(reason)} in {settings.dead_letter_topic}",
               err=True)


@dead_letters.command("replay")
@_reason_option
@click.option("--to", "to", help="Send to this topic instead of the one each event was read from.")
@click.option("--dry-run", is_flag=True, help="List what would be sent; send nothing.")
@_broker_option
def replay_dead_letters(reason: str | None, to: str | None, dry_run: bool, broker: str | None) -> None:
    """Send dead letters back (original key and value) to be ingested again, e.g. after raising a limit."""
    from app.cli.deadletters import DeadLetterError, format_table, replay

    settings = _settings(broker=broker)
    letters = _read_dead_letters(settings, reason)
    if dry_run:
        for line in format_table(letters):
            click.echo(line)
        click.echo(f"dry run: {len(letters)} dead letters{_of_reason(reason)} would be replayed")
        return
    try:
        sent = asyncio.run(replay(settings.broker, letters, settings.events_topic, to))
    except DeadLetterError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"replayed {sent} dead letters{_of_reason(reason)}")


def _read_dead_letters(settings: Settings, reason: str | None) -> list[StoredDeadLetter]:
    from app.cli.deadletters import DeadLetterError, read_dead_letters

    try:
        return asyncio.run(read_dead_letters(settings.broker, settings.dead_letter_topic, reason))
    except DeadLetterError as exc:
        raise click.ClickException(str(exc)) from None


def _of_reason(reason: str | None) -> str:
    return f" with reason {reason}" if reason else ""

