"""Figures of what a model computes, from its capture files: attention maps and hidden states.

Hidden states are projected to two dimensions by PCA (numpy SVD) and coloured by the DFA
state each prefix reaches, the probing picture of the automata-learning literature.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from fsmrun.analysis.plots import style
from fsmrun.analysis.plots.files import Capture, RunFiles
from fsmrun.analysis.plots.outcome import Skip
from fsmrun.base.errors import UserError
from fsmrun.lang.fsm import DFA

ATTENTION_PANEL_IN = 1.5
HIDDEN_PANEL_IN = 1.75
HIDDEN_COLUMNS = 4
BOS_LABEL = "BOS"


def attention_size_in(n_layers: int, n_heads: int) -> tuple[float, float]:
    """Figure size of the layer x head grid: square panels plus room for labels and colour bar."""
    return 0.9 + ATTENTION_PANEL_IN * n_heads, 0.6 + ATTENTION_PANEL_IN * n_layers


def hidden_size_in(n_panels: int) -> tuple[float, float]:
    """Figure size of the PCA panels: up to HIDDEN_COLUMNS a row, plus a legend row."""
    cols = min(n_panels, HIDDEN_COLUMNS)
    rows = math.ceil(n_panels / HIDDEN_COLUMNS)
    return 0.3 + HIDDEN_PANEL_IN * cols, 0.7 + HIDDEN_PANEL_IN * rows


def load_capture(run: RunFiles, epoch: int | None = None) -> Capture:
    """The capture of `epoch` (default: the last one); Skip when the run has none."""
    epochs = run.capture_epochs()
    if not epochs:
        raise Skip("no captures (train with --set 'train.capture_epochs=[1]' to save some)")
    if epoch is None:
        epoch = epochs[-1]
    elif epoch not in epochs:
        raise UserError(
            f"no capture of epoch {epoch} in {run.folder}; captured epochs: "
            + ", ".join(map(str, epochs))
        )
    return run.capture(epoch)


def check_string_index(cap: Capture, string_index: int) -> None:
    """UserError unless `string_index` names a string of the capture."""
    n_strings = len(cap.strings)
    if not 0 <= string_index < n_strings:
        raise UserError(
            f"string index {string_index} is out of range: the capture of epoch {cap.epoch} "
            f"holds {n_strings} strings (0..{n_strings - 1})"
        )


def attention_maps(run: RunFiles, cap: Capture, fmt: str, *, string_index: int = 0) -> Path:
    """A layer x head grid of the attention maps of one captured string."""
    if cap.attentions is None:
        raise Skip("the model has no attention (recurrent architecture)")
    check_string_index(cap, string_index)
    attn_lxbxhxtxt = cap.attentions
    n_layers, _, n_heads = attn_lxbxhxtxt.shape[:3]
    text = cap.strings[string_index]
    t = cap.lengths[string_index] + 1  # BOS, then one position per symbol
    labels = [BOS_LABEL, *text]
    tick_size = max(3.5, min(6.5, 90 / t))
    dfa = run.dfa()
    verdict = "" if dfa is None else (" (in L)" if dfa.accepts(text) else " (not in L)")
    with style.styled():
        fig = style.new_figure(*attention_size_in(n_layers, n_heads))
        axes = fig.subplots(n_layers, n_heads, squeeze=False)
        image = None
        for layer in range(n_layers):
            for head in range(n_heads):
                ax = axes[layer][head]
                weights_txt = attn_lxbxhxtxt[layer, string_index, head, :t, :t]
                image = ax.imshow(weights_txt, vmin=0.0, vmax=1.0, cmap="viridis")
                ax.grid(False)
                ax.set_xticks(range(t), labels, fontsize=tick_size, rotation=90)
                ax.set_yticks(range(t), labels, fontsize=tick_size)
                if layer == 0:
                    ax.set_title(f"head {head}")
                if head == 0:
                    ax.set_ylabel(f"layer {layer}\nquery position")
                if layer == n_layers - 1:
                    ax.set_xlabel("key position")
        fig.colorbar(image, ax=axes, shrink=0.8, label="attention weight")
        fig.suptitle(
            f"'{text}'{verdict}, epoch {cap.epoch} (step {cap.step}){run.status_mark()}",
            fontsize=8,
            wrap=True,
        )
        return style.save_figure(fig, run.plots_dir(), "attention", fmt)


def pca_2d(x_nxd: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Project rows onto the first two principal components.

    Returns (projection [N, 2], explained variance ratio [2]). Each component's sign is fixed
    so that its largest loading is positive, so equal inputs give equal pictures. Fewer than
    two components (one point, one dimension) leave zero columns.
    """
    x_nxd = np.asarray(x_nxd, dtype=np.float64)
    centred_nxd = x_nxd - x_nxd.mean(axis=0, keepdims=True)
    _, s_k, vt_kxd = np.linalg.svd(centred_nxd, full_matrices=False)
    k = min(2, vt_kxd.shape[0])
    signs_k = np.sign(vt_kxd[np.arange(k), np.abs(vt_kxd[:k]).argmax(axis=1)])
    signs_k[signs_k == 0] = 1.0
    proj_nx2 = np.zeros((x_nxd.shape[0], 2))
    proj_nx2[:, :k] = centred_nxd @ (vt_kxd[:k] * signs_k[:, None]).T
    total = float((s_k**2).sum())
    ratio_2 = np.zeros(2)
    if total > 0:
        ratio_2[:k] = s_k[:k] ** 2 / total
    return proj_nx2, ratio_2


def prefix_states(dfa: DFA, strings: list[str]) -> np.ndarray:
    """DFA state after every prefix of every string, BOS position first, concatenated."""
    return np.array([q for s in strings for q in dfa.run(s)], dtype=np.int64)


def _state_label(dfa: DFA, q: int) -> str:
    if q == dfa.dead:
        return f"q{q} (dead)"
    return f"q{q}" + (" (accept)" if dfa.accepting[q] else "")


def hidden_states(run: RunFiles, cap: Capture, fmt: str) -> Path:
    """Every captured prefix's hidden state in 2-D (PCA), coloured by DFA state; a panel a layer."""
    dfa = run.dfa()
    if dfa is None:
        raise Skip("no fsm.json in the run folder (needed to colour by DFA state)")
    hs_pxbxtxd = cap.hidden_states  # P = layers + 1 (embeddings first)
    n_panels = hs_pxbxtxd.shape[0]
    states_n = prefix_states(dfa, cap.strings)
    present = sorted(set(states_n.tolist()))
    cols = min(n_panels, HIDDEN_COLUMNS)
    rows = math.ceil(n_panels / HIDDEN_COLUMNS)
    with style.styled():
        fig = style.new_figure(*hidden_size_in(n_panels))
        axes = fig.subplots(rows, cols, squeeze=False).ravel()
        for p in range(n_panels):
            x_nxd = np.concatenate(
                [hs_pxbxtxd[p, b, : n + 1] for b, n in enumerate(cap.lengths)], axis=0
            )
            proj_nx2, ratio_2 = pca_2d(x_nxd)
            ax = axes[p]
            for i, q in enumerate(present):
                sel_n = states_n == q
                ax.scatter(
                    proj_nx2[sel_n, 0],
                    proj_nx2[sel_n, 1],
                    s=9,
                    alpha=0.8,
                    color=style.color(i),
                    marker=style.marker(i),
                    linewidths=0,
                    label=_state_label(dfa, q),
                )
            ax.set_title("embeddings" if p == 0 else f"after layer {p - 1}")
            ax.set_xlabel(f"PC1 ({100 * ratio_2[0]:.0f}% of variance)")
            ax.set_ylabel(f"PC2 ({100 * ratio_2[1]:.0f}% of variance)")
            ax.tick_params(labelsize=5.5)
        for ax in axes[n_panels:]:
            ax.set_axis_off()
        handles, labels = axes[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 5))
        fig.suptitle(
            f"hidden states by DFA state: {len(states_n)} prefixes of {len(cap.strings)} "
            f"strings, epoch {cap.epoch} (step {cap.step}){run.status_mark()}",
            fontsize=8,
            wrap=True,
        )
        return style.save_figure(fig, run.plots_dir(), "hidden_states", fmt)
