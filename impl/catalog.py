"""The map of the project: the essay's chapters and Part 2's 36 topics, in historical order.

This is the single source of truth for where things live. A topic numbered ``s.k`` with slug
``name`` has its page at ``papers/<section folder>/<kk>-<name with hyphens>.md``, its model at
``impl/<section package>/<name>.py`` (math, ``init_*``, the Linen/NNX twins: what later topics
import), its experiment at ``impl/<section package>/<name>_experiment.py`` (loss, optimizer,
task, ``experiment()``, figure: what only its page and the command line import) and its tests
at ``tests/<section package>/test_<name>.py``. Each topic carries its paper's year: a topic's
model imports only topics published that year or before (``tests/test_history.py``).
The home page's map, the navigation and the command line (``python -m impl``) all read it.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

__all__ = ["CHAPTERS", "ROOT", "SECTIONS", "TOPICS", "Chapter", "Section", "Topic", "find_topic"]

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Section:
    number: int
    title: str
    folder: str  # under papers/
    package: str  # under impl/


@dataclass(frozen=True)
class Topic:
    number: str  # "1.1"
    name: str  # module name, e.g. "dnn"
    title: str
    papers: str  # short citation
    year: int  # when the idea was published (the first paper listed): imports follow it
    claim: str  # what the toy must show

    @property
    def section(self) -> Section:
        return SECTIONS[int(self.number.split(".")[0]) - 1]

    @property
    def page(self) -> str:
        """Path of the page relative to the repository root."""
        index = int(self.number.split(".")[1])
        return f"papers/{self.section.folder}/{index:02d}-{self.name.replace('_', '-')}.md"

    @property
    def module_name(self) -> str:
        return f"impl.{self.section.package}.{self.name}"

    @property
    def experiment_module_name(self) -> str:
        """The experiment (loss, optimizer, task, ``experiment()``, figure): ``impl.<package>.<name>_experiment``."""
        return f"{self.module_name}_experiment"

    @property
    def test_file(self) -> str:
        return f"tests/{self.section.package}/test_{self.name}.py"

    @property
    def implemented(self) -> bool:
        """True when the page, the model module and the experiment module all exist."""
        return (ROOT / self.page).exists() and all(
            importlib.util.find_spec(name) is not None
            for name in (self.module_name, self.experiment_module_name)
        )

    def load(self) -> ModuleType:
        """The model module: the math, ``init_*`` and the Linen/NNX twins."""
        return importlib.import_module(self.module_name)

    def load_experiment(self) -> ModuleType:
        """The experiment module, whose ``experiment(seed=0, *, progress=None)`` returns a `Report`."""
        return importlib.import_module(self.experiment_module_name)


@dataclass(frozen=True)
class Chapter:
    number: str
    title: str
    path: str  # relative to the repository root

    @property
    def written(self) -> bool:
        return (ROOT / self.path).exists()


SECTIONS = (
    Section(1, "Deep neural networks", "01-deep-neural-networks", "deep_networks"),
    Section(
        2, "Optimization & regularization", "02-optimization-and-regularization", "optimization"
    ),
    Section(3, "Sequence modeling", "03-sequence-modeling", "sequence"),
    Section(4, "Transformers", "04-transformers", "transformers"),
    Section(5, "Image generation", "05-image-generation", "generation"),
)

_T = Topic
TOPICS = (
    _T("1.1", "dnn", "DNN", "Rumelhart, Hinton & Williams 1986", 1986, "hand-written backprop equals jax.grad; a hidden layer solves XOR and two spirals where a linear model cannot"),
    _T("1.2", "cnn", "CNN", "LeCun et al. 1989; LeCun et al. 1998", 1989, "a CNN beats an MLP of similar size on digits; convolution is translation-equivariant"),
    _T("1.3", "alexnet", "AlexNet", "Krizhevsky, Sutskever & Hinton 2012", 2012, "ReLU trains faster than tanh; augmentation and dropout shrink the train/test gap"),
    _T("1.4", "unet", "U-Net", "Ronneberger, Fischer & Brox 2015", 2015, "skip connections clearly raise segmentation IoU"),
    _T("2.1", "weight_decay", "Weight decay", "Krogh & Hertz 1991", 1991, "test error is U-shaped in the decay strength; its minimum beats no decay"),
    _T("2.2", "relu", "ReLU", "Nair & Hinton 2010; Glorot, Bordes & Bengio 2011", 2010, "sigmoid/tanh gradients vanish in a deep stack, ReLU's do not; ReLU activations are sparse"),
    _T("2.3", "residuals", "Residuals", "He, Zhang, Ren & Sun 2015", 2015, "a deep plain net trains worse than a shallow one; its residual twin does not"),
    _T("2.4", "dropout", "Dropout", "Hinton et al. 2012; Srivastava et al. 2014", 2012, "dropout narrows the train/test gap; expected activations are preserved"),
    _T("2.5", "batch_norm", "Batch normalization", "Ioffe & Szegedy 2015", 2015, "with BN a net trains at learning rates where the plain net diverges"),
    _T("2.6", "layer_norm", "Layer normalization", "Ba, Kiros & Hinton 2016", 2016, "batch-independent, scale-invariant, stabilises an RNN"),
    _T("2.7", "gelu", "GELU", "Hendrycks & Gimpel 2016", 2016, "the tanh approximation's error is bounded; GELU trains at least as well as ReLU"),
    _T("2.8", "adam", "Adam", "Kingma & Ba 2015", 2015, "invariant to gradient rescaling; bias correction matters early; beats SGD on a badly conditioned problem"),
    _T("3.1", "rnn", "RNN", "Williams & Zipser 1989", 1989, "learns a short-memory task; gradients shrink exponentially with distance"),
    _T("3.2", "lstm", "LSTM", "Hochreiter & Schmidhuber 1997", 1997, "succeeds on a long-time-lag task where an RNN of equal size fails"),
    _T("3.3", "forget_gate", "Learning to forget", "Gers, Schmidhuber & Cummins 2000", 2000, "without a forget gate the cell state grows on a continual stream; with it, prediction continues"),
    _T("3.4", "word2vec", "Word2Vec", "Mikolov et al. 2013", 2013, "planted analogies are solved far above chance; neighbours are semantic"),
    _T("3.5", "encoder_decoder", "Encoder-decoder", "Cho et al. 2014", 2014, "accuracy falls as inputs grow: the fixed-vector bottleneck"),
    _T("3.6", "seq2seq", "Seq2Seq", "Sutskever, Vinyals & Le 2014", 2014, "reversing the source helps; beam search beats greedy"),
    _T("3.7", "attention", "Attention", "Bahdanau, Cho & Bengio 2014", 2014, "accuracy holds on long inputs; the alignment is shown"),
    _T("3.8", "mixture_of_experts", "Mixture of experts", "Shazeer et al. 2017", 2017, "the balancing loss evens expert load; capacity grows at constant compute"),
    _T("4.1", "transformer", "Transformer", "Vaswani et al. 2017", 2017, "beats the attentive RNN on a toy translation task, in parallel"),
    _T("4.2", "bert", "BERT", "Devlin et al. 2018", 2018, "pre-training makes a downstream task learnable from few labels"),
    _T("4.3", "roberta", "RoBERTa", "Liu et al. 2019", 2019, "an ablation of masking and NSP, reported honestly"),
    _T("4.4", "t5", "T5", "Raffel et al. 2019", 2019, "one model, several tasks by prefix; span corruption helps"),
    _T("4.5", "gpt2", "GPT-2", "Radford et al. 2019", 2019, "a language model reaches a stated loss; zero-shot behaviour appears"),
    _T("4.6", "gpt3", "GPT-3", "Brown et al. 2020", 2020, "in-context accuracy rises with examples, more for larger models"),
    _T("4.7", "lora", "LoRA", "Hu et al. 2021", 2021, "matches full fine-tuning with few trainable parameters; merging is exact"),
    _T("4.8", "instructgpt", "InstructGPT", "Ouyang et al. 2022; Schulman et al. 2017", 2022, "reward rises with bounded KL; without the KL term the policy hacks the reward"),
    _T("4.9", "vit", "Vision Transformer", "Dosovitskiy et al. 2020", 2020, "ViT needs more data than a CNN on digits"),
    _T("4.10", "moe_transformer", "MoE Transformer", "Fedus, Zoph & Shazeer 2021; Lepikhin et al. 2020", 2021, "more experts, lower loss at equal compute; drops vs capacity factor"),
    _T("5.1", "gan", "GAN", "Goodfellow et al. 2014", 2014, "samples cover the modes; the saturating loss stalls"),
    _T("5.2", "vae", "VAE", "Kingma & Welling 2013; van den Oord et al. 2017", 2013, "the ELBO improves; interpolation is smooth; codebook usage reported"),
    _T("5.3", "diffusion", "Diffusion", "Ho, Jain & Abbeel 2020; Nichol & Dhariwal 2021", 2020, "samples match the data; guidance trades diversity for accuracy"),
    _T("5.4", "stable_diffusion", "Stable Diffusion, ControlNet, SDXL", "Rombach et al. 2022; Zhang et al. 2023; Podell et al. 2023", 2022, "captions are followed; ControlNet starts as an exact no-op"),
    _T("5.5", "clip", "CLIP", "Radford et al. 2021", 2021, "zero-shot classification of held-out combinations far above chance"),
    _T("5.6", "dalle", "DALL·E, DALL·E 2", "Ramesh et al. 2021; Ramesh et al. 2022", 2021, "images match their captions more often than shuffled captions"),
)  # fmt: skip

CHAPTERS = (
    Chapter("1", "Introduction", "essays/01-introduction.md"),
    Chapter("2.1", "Data", "essays/02-constraints/01-data.md"),
    Chapter("2.2", "Size", "essays/02-constraints/02-size.md"),
    Chapter(
        "2.3",
        "Optimization & regularization",
        "essays/02-constraints/03-optimization-and-regularization.md",
    ),
    Chapter("2.4", "Architecture", "essays/02-constraints/04-architecture.md"),
    Chapter("2.5", "Compute", "essays/02-constraints/05-compute.md"),
    Chapter("2.6", "Compute efficiency", "essays/02-constraints/06-compute-efficiency.md"),
    Chapter("2.7", "Energy", "essays/02-constraints/07-energy.md"),
    Chapter(
        "2.8", "Constraints & leverage", "essays/02-constraints/08-constraints-and-leverage.md"
    ),
    Chapter("3", "Narratives", "essays/03-narratives.md"),
    Chapter("4", "Inspiration", "essays/04-inspiration.md"),
    Chapter("5", "Intelligence", "essays/05-intelligence.md"),
    Chapter("6", "Future", "essays/06-future.md"),
)


def find_topic(query: str) -> Topic:
    """Look a topic up by number (``"1.1"``), module name (``"dnn"``) or title (``"DNN"``)."""
    wanted = query.strip().lower().replace("-", "_")
    for topic in TOPICS:
        if wanted in (topic.number, topic.name, topic.title.lower().replace("-", "_")):
            return topic
    names = ", ".join(t.number for t in TOPICS)
    raise ValueError(f"topic: expected a topic number or name ({names}); got {query!r}")


def site_map(from_page: str) -> str:
    """The whole map as Markdown, links relative to ``from_page`` for pages that exist."""
    import posixpath

    base = posixpath.dirname(from_page)

    def link(text: str, target: str, exists: bool) -> str:
        return f"[{text}]({posixpath.relpath(target, base)})" if exists else f"{text} *(coming)*"

    lines = ["### Part 1 — the essay", ""]
    for ch in CHAPTERS:
        lines.append(f"- {ch.number} {link(ch.title, ch.path, ch.written)}")
    lines += ["", "### Part 2 — the arrow of progress", ""]
    for section in SECTIONS:
        lines += [
            "",
            f"**{section.number}. {section.title}**",
            "",
            "| # | topic | paper | the claim, at toy scale |",
            "|---|---|---|---|",
        ]
        for t in (t for t in TOPICS if t.section is section):
            lines.append(
                f"| {t.number} | {link(t.title, t.page, t.implemented)} | {t.papers} | {t.claim} |"
            )
    return "\n".join(lines)
