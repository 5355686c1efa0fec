"""The ``mlxseq`` command line: one library call per command, heavy imports inside."""

from contextlib import nullcontext
from pathlib import Path

import typer

from mlxseq.decoding.args import DecodingArgs

from mlxseq.cli.helpers import (check_writable_file, decoding_choices, folder_errors, say_startup_notes,
                                sentence_progress)

DEFAULT = DecodingArgs()  # the decoding defaults the help texts name
app = typer.Typer(help="Recurrent sequence models on MLX.", no_args_is_help=True, add_completion=False)


def _version(value: bool):
    if value:
        from mlxseq._version import __version__

        typer.echo(f"mlxseq {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
):
    """mlxseq: RNN, GRU and LSTM models with PyTorch's parameters, compiled for MLX."""


@app.command()
def info():
    """Show the MLX version, device, BLAS and compiler that mlxseq runs with."""
    from mlxseq.system.environment import describe_environment

    for key, value in describe_environment().items():
        typer.echo(f"{key + ':':<14}{value}")


@app.command()
def demo(
    kind: str = typer.Option("lstm", help="rnn, gru or lstm."),
    batch: int = typer.Option(32, min=1, help="Sequences per batch."),
    steps: int = typer.Option(40, min=1, help="Time steps of the longest sequence."),
    hidden: int = typer.Option(256, min=1, help="Hidden size."),
):
    """Run a deep bidirectional layer on a ragged batch, forward and backward, and time it."""
    say_startup_notes()
    from mlxseq.cli.demo import run_demo

    try:
        run_demo(kind, batch, steps, hidden, echo=typer.echo)
    except ValueError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1)


@app.command()
def convert(
    source: str = typer.Argument(..., help="PyTorch file of any era (.pt/.pth/.bin/.tar: state dicts, nested "
                                            "checkpoints, whole modules, TorchScript), an OpenNMT-py checkpoint, ONNX "
                                            "(.onnx), Keras (.keras, .h5), .safetensors or .npz."),
    out_dir: str = typer.Argument(..., help="Model folder to write."),
    format: str = typer.Option("auto", "--format", help="auto, torch-rnn, pytorch-tutorial or opennmt."),
    prefix: str = typer.Option(None, help="Key prefix of the layer, e.g. 'encoder.rnn.' (when there are several)."),
    nonlinearity: str = typer.Option("tanh", help="tanh or relu, for an nn.RNN (its weights cannot tell)."),
    allow: list[str] = typer.Option([], help="Extra pickled class paths to read as inert records (e.g. 'argparse.Namespace')."),
    decoder: str = typer.Option(None, help="PyTorch tutorial: the decoder's state dict, when SOURCE holds the encoder's."),
    src_vocab: str = typer.Option(None, help="PyTorch tutorial: source words, one per line in index order (SOS, EOS, ...)."),
    tgt_vocab: str = typer.Option(None, help="PyTorch tutorial: target words, one per line in index order (SOS, EOS, ...)."),
    key: str = typer.Option(None, help="Dotted path to the part of a nested checkpoint to convert, e.g. 'model_state'."),
    quantize: bool = typer.Option(False, "--quantize", "-q", help="Write the folder quantized (as mlxseq quantize)."),
    q_bits: int = typer.Option(8, help="With -q: bits per weight, 8 or 4."),
    q_group_size: int = typer.Option(64, help="With -q: weights sharing one scale and bias, 32, 64 or 128."),
):
    """Convert a trained recurrent model from PyTorch, OpenNMT-py, ONNX or Keras into an mlxseq model folder,
    without torch and without running anything from the file."""
    import tempfile

    from mlxseq.checkpoint import ModelFolderError, quantize_folder
    from mlxseq.convert.errors import CheckpointError
    from mlxseq.convert.folder import ConversionError, convert_checkpoint

    try:
        with tempfile.TemporaryDirectory(dir=Path(out_dir).resolve().parent) if quantize else nullcontext() as work:
            done = convert_checkpoint(
                source, Path(work) / "full" if quantize else out_dir, format=format, prefix=prefix,
                nonlinearity=nonlinearity, allow=tuple(allow), decoder=decoder, src_vocab=src_vocab,
                tgt_vocab=tgt_vocab, key=key,
            )
            if quantize:
                done.folder = quantize_folder(done.folder, out_dir, bits=q_bits, group_size=q_group_size)
    except (ConversionError, CheckpointError, ModelFolderError, OSError) as error:  # OSError: missing source, unwritable output
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1)
    typer.echo(f"found {done.description}")
    if done.left_out:
        shown = ", ".join(done.left_out[:12]) + (f", ... ({len(done.left_out) - 12} more)" if len(done.left_out) > 12 else "")
        typer.echo(f"not converted ({len(done.left_out)} tensors): {shown}")
    typer.echo(f"wrote {done.folder}" + (f" ({q_bits}-bit, groups of {q_group_size})" if quantize else ""))


@app.command()
def translate(
    text: list[str] = typer.Argument(None, help="Sentences to translate; default: --input, or standard input."),
    model: list[str] = typer.Option(
        None, help="Model folder or Hugging Face Hub repo id; default: the bundled model. Repeat it to translate "
                   "with an ensemble (the mean of the models' log-probabilities at each step)."),
    input: str = typer.Option(None, "--input", "-i", help="File with one sentence per line."),
    output: str = typer.Option(None, "--output", "-o", help="Write translations here instead of standard output."),
    beam_size: int = typer.Option(None, help=f"Beam size; 1 is greedy search. Default: the model's, else {DEFAULT.beam_size}."),
    length_penalty: float = typer.Option(
        None, help="GNMT length penalty alpha; 0 ranks by the sum of log-probabilities. "
                   f"Default: the model's, else {DEFAULT.length_penalty}."),
    length_penalty_kind: str = typer.Option(
        None, help="gnmt: ((5 + len) / 6) ** alpha; average: len ** alpha (OpenNMT-py's avg). "
                   f"Default: the model's, else {DEFAULT.length_penalty_kind}."),
    max_length_ratio: float = typer.Option(
        None, help="Output length limit as a multiple of the source length (+offset). "
                   f"Default: the model's, else {DEFAULT.max_length_ratio:g}."),
    max_length_offset: int = typer.Option(
        None, help=f"Tokens added to the --max-length-ratio limit. Default: the model's, else {DEFAULT.max_length_offset}."),
    n_best: int = typer.Option(DEFAULT.n_best, help="Translations per input, with scores (tab-separated)."),
    batch_size: int = typer.Option(DEFAULT.batch_size, help="Sentences per batch."),
    attention: str = typer.Option(
        None, help="Save each sentence's attention heatmap to this PNG (several sentences: NAME-1.png, NAME-2.png, ...)."),
    search: str = typer.Option(
        None, help="mlxseq, or opennmt: OpenNMT-py's beam search and scoring, nothing banned. "
                   f"Default: the model's, else {DEFAULT.search}."),
    max_length: int = typer.Option(
        None, help="Fixed output length limit (tokens) instead of --max-length-ratio; 0: none. "
                   f"Default: the model's, else {DEFAULT.max_length}."),
    replace_unk: bool = typer.Option(
        False, help="Replace each <unk> of the output by the most attended source word (word tokenizers only)."),
):
    """Translate sentences with a seq2seq model (greedy or beam search)."""
    say_startup_notes()
    import sys

    from mlxseq.checkpoint import ModelFolderError
    from mlxseq.data import DataError, read_lines, read_stream_lines
    from mlxseq.pipelines.translator import Translator

    try:
        given = decoding_choices(
            beam_size, length_penalty, max_length_ratio, n_best, batch_size, search, max_length, replace_unk,
            length_penalty_kind, max_length_offset)
        if attention:
            check_writable_file(attention)
        interactive = not text and not input and sys.stdin.isatty()
        if text:
            sentences = list(text)
        elif input:
            sentences = read_lines([input])
        elif not interactive:
            sentences = list(read_stream_lines(sys.stdin.buffer))
        translator = Translator.load(list(model) if model else None)
        options = translator.options(**given)
        if interactive:  # a person typing: each line is translated as it arrives
            for line in read_stream_lines(sys.stdin.buffer):
                for hyp in translator.translate([line], options)[0]:
                    typer.echo(hyp.text if n_best == 1 else f"{hyp.text}\t{hyp.score:.4f}")
            return
        with sentence_progress(len(sentences)) as advance:
            found = translator.translate(sentences, options, on_progress=advance)
    except (ModelFolderError, DataError, ValueError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1)
    lines = []
    for hyps in found:
        if n_best == 1:
            lines.append(hyps[0].text)
        else:
            lines.extend(f"{h.text}\t{h.score:.4f}" for h in hyps)
    if output:
        from mlxseq.system.files import write_text

        try:
            write_text(output, "".join(line + "\n" for line in lines))
        except OSError as error:
            typer.echo(f"error: cannot write {output}: {error.strerror or error}", err=True)
            raise typer.Exit(1)
    else:
        for line in lines:
            typer.echo(line)
    if attention and sentences:
        from mlxseq.pipelines.attention_plots import attention_paths, save_attention_heatmap

        for path, sentence, hyps in zip(attention_paths(attention, len(sentences)), sentences, found):
            weights, src_tokens, tgt_tokens = translator.attention_map(sentence, hyps[0])
            try:
                save_attention_heatmap(path, weights, src_tokens, tgt_tokens)
            except OSError as error:
                typer.echo(f"error: cannot write {path}: {error.strerror or error}", err=True)
                raise typer.Exit(1)
            typer.echo(f"attention heatmap: {path}", err=True)


@app.command()
def evaluate(
    model: list[str] = typer.Option(
        None, help="Model folder or Hub repo id; default: the bundled model. Repeat it to score an ensemble "
                   "(classifiers: mean of the probabilities; translation: of the log-probabilities at each step)."),
    src: str = typer.Option(None, help="Translation: source sentences, one per line."),
    ref: str = typer.Option(None, help="Translation: reference translations, one per line."),
    data: str = typer.Option(None, help="Classifier: TSV text<TAB>label; tagger: CoNLL-U; forecaster: the CSV series; "
                                        "speech: a speech list (audio<TAB>transcript, or a digit list)."),
    recordings: str = typer.Option(None, help="Speech: the FSDD recordings (folder or .tar.gz) a digit list is made of."),
    split: str = typer.Option("test", help="Forecaster: the rows scored (train, valid or test, as trained)."),
    beam_size: int = typer.Option(None, help=f"Beam size; 1 is greedy search. Default: the model's, else {DEFAULT.beam_size}."),
    length_penalty: float = typer.Option(
        None, help=f"GNMT length penalty alpha. Default: the model's, else {DEFAULT.length_penalty}."),
    max_length_ratio: float = typer.Option(
        None, help="Output length limit as a multiple of the source length (+offset). "
                   f"Default: the model's, else {DEFAULT.max_length_ratio:g}."),
    batch_size: int = typer.Option(32, help="Sentences (texts, windows) per batch."),
):
    """Score a model: BLEU and chrF of translating --src against --ref (sacrebleu signatures);
    accuracy and macro-F1, tag accuracy (entity F1 for BIO tags), MSE and MAE, or WER and CER on --data."""
    say_startup_notes()
    from mlxseq.checkpoint import ModelFolderError
    from mlxseq.data import DataError, read_parallel
    from mlxseq.pipelines.translator import Translator

    if data is not None:
        from mlxseq.pipelines.prediction import evaluate as evaluate_folder

        if not model:
            typer.echo("error: --data scores a model folder: pass it with --model (a classifier, tagger, forecaster "
                       "or speech recogniser; the bundled digit recogniser is mlxseq/bundled/fsdd-digits)", err=True)
            raise typer.Exit(1)
        try:
            lines = evaluate_folder(model, data, split=split, batch_size=batch_size, recordings=recordings,
                                    beam_size=1 if beam_size is None else beam_size)
        except (ModelFolderError, DataError, ValueError) as error:
            typer.echo(f"error: {error}", err=True)
            raise typer.Exit(1)
        for line in lines:
            typer.echo(line)
        return
    if src is None or ref is None:
        typer.echo("error: pass --src and --ref (translation) or --data (classifier, tagger, forecaster)", err=True)
        raise typer.Exit(1)
    try:
        given = decoding_choices(beam_size, length_penalty, max_length_ratio, 1, batch_size)
        corpus = read_parallel(src, ref)
        translator = Translator.load(list(model) if model else None)
        options = translator.options(**given)
        with sentence_progress(len(corpus.source)) as advance:
            scores = translator.evaluate(list(corpus.source), list(corpus.target), options, on_progress=advance)
    except (ModelFolderError, DataError, ValueError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1)
    typer.echo(f"BLEU {scores['bleu']:.2f}  {scores['bleu_signature']}")
    typer.echo(f"chrF {scores['chrf']:.2f}  {scores['chrf_signature']}")
    typer.echo(f"decoding: {scores['settings']}; {scores['sentences']} sentences; model {translator.description}")


@app.command()
def predict(
    text: list[str] = typer.Argument(None, help="Texts to label; default: --input, or standard input."),
    model: list[str] = typer.Option(
        ..., help="Classifier, tagger or forecaster folder, or Hub repo id; repeat it for an ensemble of classifiers."),
    input: str = typer.Option(None, "--input", "-i", help="Texts one per line, CoNLL-U (tagger) or a CSV series (forecaster)."),
    output: str = typer.Option(None, "--output", "-o", help="Write here instead of standard output."),
    format: str = typer.Option("auto", "--format", help="Tagger output: text (word/TAG) or conllu; auto: as the input."),
    batch_size: int = typer.Option(64, help="Texts per batch."),
    threshold: float = typer.Option(0.5, help="Multi-label classifier: predict the labels of at least this probability."),
):
    """Label texts (label and probability), tag words, or forecast the steps after a CSV series."""
    say_startup_notes()
    import sys

    from mlxseq.checkpoint import ModelFolderError
    from mlxseq.data import DataError, read_stream_lines
    from mlxseq.pipelines.prediction import predict as predict_folder

    try:
        lines = None if text or input else list(read_stream_lines(sys.stdin.buffer))
        result = predict_folder(model, text, input, output_format=format, batch_size=batch_size,
                                threshold=threshold, lines=lines)
    except (ModelFolderError, DataError, ValueError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1)
    if output:
        from mlxseq.system.files import write_text

        try:
            write_text(output, result)
        except OSError as error:
            typer.echo(f"error: cannot write {output}: {error.strerror or error}", err=True)
            raise typer.Exit(1)
    else:
        typer.echo(result, nl=False)


@app.command()
def upload(
    folder: str = typer.Argument(..., help="Model folder to publish."),
    repo_id: str = typer.Argument(..., help="Hugging Face Hub repo id, owner/name."),
    private: bool = typer.Option(False, help="Create the repo as private."),
):
    """Publish a model folder to the Hugging Face Hub."""
    from mlxseq.checkpoint import ModelFolderError, upload as upload_folder

    try:
        url = upload_folder(folder, repo_id, private=private)
    except ModelFolderError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1)
    typer.echo(f"uploaded {folder} to {url}")


@app.command()
def quantize(
    folder: str = typer.Argument(..., help="Model folder or Hub repo id to quantize."),
    output: str = typer.Argument(..., help="Model folder to write."),
    bits: int = typer.Option(8, help="Bits per weight: 8 or 4."),
    group_size: int = typer.Option(64, help="Weights sharing one scale and bias: 32, 64 or 128."),
    recurrent: bool = typer.Option(True, help="Also store the recurrent matrices quantized (dequantized at load)."),
):
    """Store a model's weights quantized (smaller folder; loads like any folder)."""
    from mlxseq.checkpoint import quantize_folder

    with folder_errors(output):
        out = quantize_folder(folder, output, bits=bits, group_size=group_size, recurrent=recurrent)
    typer.echo(f"wrote {out} ({bits}-bit, groups of {group_size})")


@app.command()
def average(
    folders: list[str] = typer.Argument(..., help="Model folders of one model, e.g. runs/x/checkpoints/step-*."),
    output: str = typer.Option(..., "--output", "-o", help="Model folder to write with the averaged weights."),
):
    """Average the weights of several checkpoints of one model into a new model folder."""
    from mlxseq.training.averaging import average_folders

    with folder_errors(output):
        out = average_folders(folders, output)
    typer.echo(f"averaged {len(folders)} model folders into {out}")


@app.command()
def generate(
    model: str = typer.Option(None, help="Language-model folder or Hub repo id; default: the bundled model."),
    prompt: str = typer.Option("", help="Text to continue; empty starts from the start token; - reads it from standard input."),
    max_tokens: int = typer.Option(100, "--max-tokens", "-m", help="Tokens to generate per sample."),
    temp: float = typer.Option(0.0, help="Sampling temperature; 0 is argmax."),
    top_k: int = typer.Option(0, help="Keep the k most likely tokens; 0 disables."),
    top_p: float = typer.Option(1.0, help="Nucleus sampling threshold in (0, 1]; 1 disables."),
    min_p: float = typer.Option(0.0, help="Drop tokens below min_p times the top probability; 0 disables."),
    repetition_penalty: float = typer.Option(None, help="Penalty > 1 for recently seen tokens."),
    seed: int = typer.Option(None, help="Random seed: the same seed gives the same text."),
    num_samples: int = typer.Option(1, help="Samples to generate."),
    stop: list[str] = typer.Option([], help="Stop when this string appears (repeatable)."),
    beam_size: int = typer.Option(1, help="Beam search with this beam instead of sampling."),
):
    """Generate text with a language model, streaming it to the terminal."""
    say_startup_notes()
    import sys

    from mlxseq.checkpoint import ModelFolderError
    from mlxseq.data import DataError, read_stream_lines
    from mlxseq.pipelines.generator import GenerationOptions, Generator

    try:
        if prompt == "-":
            prompt = "\n".join(read_stream_lines(sys.stdin.buffer))
        options = GenerationOptions(
            max_tokens=max_tokens, temp=temp, top_k=top_k, top_p=top_p, min_p=min_p,
            repetition_penalty=repetition_penalty, seed=seed, num_samples=num_samples,
            stop=tuple(stop), beam_size=beam_size,
        )
        generator = Generator.load(model)
    except (ModelFolderError, DataError, ValueError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1)
    if num_samples == 1 and beam_size == 1:
        typer.echo(prompt, nl=False)
        for piece in generator.stream(prompt, options):
            typer.echo(piece, nl=False)
        typer.echo()
        return
    for i, text in enumerate(generator.generate(prompt, options)):
        if num_samples > 1:
            typer.echo(f"--- sample {i + 1}")
        typer.echo(prompt + text)


@app.command()
def train(
    config: str = typer.Argument(..., help="Training config, YAML or JSON (see configs/)."),
    set_: list[str] = typer.Option([], "--set", help="Override a config value: key.sub=value (YAML scalar rules); repeatable."),
    resume: bool = typer.Option(
        None, "--resume/--no-resume", help="Continue the run in output_dir / insist on a fresh one; default: continue if there is one."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar and no messages."),
    distributed: bool = typer.Option(
        None, "--distributed/--no-distributed",
        help="Data parallel over the processes mlx.launch started; default: when its environment is there.",
    ),
    startup_timeout: float = typer.Option(
        None, "--startup-timeout", min=1,
        help="Seconds to wait for every distributed process to join; then the one missing is named. Default: 120.",
    ),
):
    """Train the model a config describes; run the same command again to resume."""
    if not quiet:
        say_startup_notes()
    from mlxseq.runs.from_config import USER_ERRORS, train_from_config

    try:
        result = train_from_config(
            config, set_, resume=resume, quiet=quiet, distributed=distributed, startup_timeout=startup_timeout
        )
    except USER_ERRORS as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1)
    except KeyboardInterrupt as error:
        typer.echo(str(error) or "interrupted", err=True)
        raise typer.Exit(130)
    if result.rank != 0:
        return
    best = result.best
    score = f"; best {best['metric']} {best['value']:.4g} at step {best['step']}" if best["value"] is not None else ""
    typer.echo(f"trained to step {result.step} ({result.stopped}){score}: {result.output_dir}")


from mlxseq.cli.serving import serve  # noqa: E402
from mlxseq.cli.speech import transcribe  # noqa: E402

app.command()(serve)
app.command()(transcribe)
