"""A dependency-free C99 runtime for a packed model: the text of the files `experiments.export_c` writes.

    bitnet_model.h   the model as `const` arrays (bitnet-packed bit order, documented in the file), its sizes
                     and the two functions of the API; the arrays are compiled in bitnet_model.c only
    bitnet_model.c   input encoding from raw 8-bit pixels, XOR + popcount with integer sums, sign or
                     threshold neurons, argmax: C99 with <stdint.h> only, no library call, no heap, no
                     static state; the caller passes a working buffer of BITNET_WORK_BYTES
    main.c           a test harness: raw images (BITNET_PIXELS bytes each) from a file or stdin, one
                     predicted label per line (or, with -e, each image's encoded input bits)

The integers are those of `bitnet.deploy.inference` (the formulas in its docstring): the same planes,
padding bits that are 0 in x, w and m (so they never count), sign(0) = +1, threshold neurons
s * a >= T, ties of the argmax to the lowest index. A dense layer (every weight nonzero) stores no
mask plane, as its kernel never reads one. The encoding compares integers only: each of the
encoding's thresholds t (p/255 scale, float64 in `bitnet.core.encodings`) becomes the least pixel
value q with q/255 > t (`pixel_thresholds`), so bit on <=> p >= q for all 256 values of p.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from bitnet.core import encodings
from bitnet.deploy import export, packing

HEADER = "bitnet_model.h"
SOURCE = "bitnet_model.c"
HARNESS = "main.c"
NEVER = 256  # a pixel threshold no uint8 value reaches: the bit is always off
WORDS_PER_LINE = 8


def pixel_thresholds(encoding: encodings.Encoding) -> tuple[int, ...]:
    """Per threshold t, the least pixel value q with q/255 > t as `encodings.encode` computes it (NEVER if none)."""
    pixels = np.arange(256)
    on = pixels[:, None] / 255.0 > np.asarray(encoding.thresholds, np.float64)[None, :]  # the expression encode() evaluates
    return tuple(int(np.argmax(column)) if column.any() else NEVER for column in on.T)


def is_thermometer(encoding: encodings.Encoding) -> bool:
    """Whether each plane is one threshold's bit (thermoK, and the one-plane bipolar / binary) rather than a level's bit (fixedK)."""
    return not encoding.name.startswith("fixed")


def buffer_words(model) -> tuple[int, int]:
    """Words of the two halves of the working buffer: layer l reads its packed input from half l % 2."""
    inputs = [packing.num_words(layer.n_in) for layer in model.layers]
    return max(inputs[0::2]), max(inputs[1::2], default=0)


def working_bytes(model) -> int:
    """Bytes of the caller's working buffer (BITNET_WORK_BYTES): the packed inputs of two consecutive layers."""
    return 4 * sum(buffer_words(model))


def layer_arrays(model) -> list[dict[str, tuple[str, np.ndarray]]]:
    """Per layer, the arrays the header holds: {C name: (C type, values)}; no mask for a dense layer."""
    layers = []
    for index, layer in enumerate(model.layers):
        arrays = {f"bitnet_w{index}_sign": ("uint32_t", np.asarray(layer.sign, np.uint32))}
        if not layer.dense:
            arrays[f"bitnet_w{index}_mask"] = ("uint32_t", np.asarray(layer.mask, np.uint32))
        if layer.threshold is None:
            arrays[f"bitnet_b{index}"] = ("int8_t", np.asarray(layer.bias, np.int8))
        else:
            arrays[f"bitnet_t{index}"] = ("int32_t", np.asarray(layer.threshold, np.int32))
            arrays[f"bitnet_s{index}"] = ("int8_t", np.asarray(layer.polarity, np.int8))
        layers.append(arrays)
    return layers


def read_only_bytes(model, encoding: encodings.Encoding) -> int:
    """Bytes of the header's arrays (planes, per-neuron numbers, pixel thresholds); the layer table and code come on top."""
    arrays = [values for layer in layer_arrays(model) for _, values in layer.values()]
    return sum(values.nbytes for values in arrays) + 2 * len(encoding.thresholds)


def c_array(ctype: str, name: str, values: np.ndarray) -> str:
    """`static const ctype name[n] = {...};` of flat values, hexadecimal for words."""
    flat = np.asarray(values).reshape(-1).tolist()
    text = [f"0x{value:08x}u" for value in flat] if ctype == "uint32_t" else [str(value) for value in flat]
    lines = (", ".join(text[start : start + WORDS_PER_LINE]) for start in range(0, len(text), WORDS_PER_LINE))
    return f"static const {ctype} {name}[{len(flat)}] = {{\n    " + ",\n    ".join(lines) + "\n};\n"


def layer_entry(index: int, layer, binary_inputs: bool, arrays: dict) -> str:
    """One initializer of the layer table (`bitnet_layer` in the header)."""
    names = (f"bitnet_w{index}_sign", f"bitnet_w{index}_mask", f"bitnet_b{index}", f"bitnet_t{index}", f"bitnet_s{index}")
    pointers = [name if name in arrays else "0" for name in names]  # a null pointer where the array is absent
    fields = [str(layer.n_in), str(layer.n_out), str(packing.num_words(layer.n_in)), str(int(binary_inputs)), *pointers]
    return "    {" + ", ".join(fields) + "}"


def header_text(model, encoding: encodings.Encoding, description: str) -> str:
    """bitnet_model.h of a `bitnet.deploy.inference.PackedModel` fed by `encoding` (`description`: where it came from)."""
    even, odd = buffer_words(model)
    arrays = layer_arrays(model)
    thresholds = pixel_thresholds(encoding)
    pixels = model.layers[0].n_in // encoding.planes
    entries = [layer_entry(i, layer, i == 0 and model.input_bits == "binary", arrays[i]) for i, layer in enumerate(model.layers)]
    data = "".join(c_array(ctype, name, values) for layer in arrays for name, (ctype, values) in layer.items())
    sizes = ", ".join(str(layer.n_in) for layer in model.layers) + f", {model.layers[-1].n_out}"
    return f"""\
/* bitnet_model.h: {description}
 * Generated by `python -m experiments.export_c`; the runtime is bitnet_model.c (C99, <stdint.h> only).
 *
 * Network: {sizes} ({len(model.layers)} layers), inputs {model.input_bits} ({encoding.name} encoding of
 * BITNET_PIXELS 8-bit pixels, BITNET_PLANES planes), hidden layers {"threshold neurons (s * a >= T)" if model.layers[0].threshold is not None else "sign(a), sign(0) = +1"}.
 * Memory: read-only {read_only_bytes(model, encoding)} bytes of arrays below (BITNET_READ_ONLY_BYTES; the layer table
 * and the code come on top); working memory BITNET_WORK_BYTES = {working_bytes(model)} bytes, a buffer the caller passes.
 *
 * Bit order (bitnet-packed-v1/-v2): a layer's weights are two planes of uint32 words, one row of
 * ceil(n_in / 32) words per output neuron; bit j (least significant first) of word k of a row is
 * the weight of input 32k + j. Sign plane: 1 where the weight is +1. Mask plane: 1 where the weight
 * is nonzero (a layer without a mask plane is dense: every weight is +1 or -1). Padding bits past
 * n_in are 0 in both planes. Inputs and hidden activations are packed the same way (bit 1 = +1, or 1).
 * Input i = plane * BITNET_PIXELS + pixel; plane b of pixel p is on where p >= bitnet_pixel_thresholds[b]
 * (thermometer planes, and bipolar / binary) or, fixedK, bit (BITNET_PLANES - 1 - b) of the level
 * #{{b : p >= bitnet_pixel_thresholds[b]}} (most significant plane first); 256 = never on.
 */
#ifndef BITNET_MODEL_H
#define BITNET_MODEL_H

#include <stdint.h>

#define BITNET_PIXELS {pixels}
#define BITNET_PLANES {encoding.planes}
#define BITNET_INPUTS {model.layers[0].n_in}
#define BITNET_CLASSES {model.layers[-1].n_out}
#define BITNET_LAYERS {len(model.layers)}
#define BITNET_CODE_THRESHOLDS {len(thresholds)}
#define BITNET_THERMOMETER {int(is_thermometer(encoding))}
#define BITNET_EVEN_WORDS {even} /* packed inputs of layers 0, 2, ... */
#define BITNET_ODD_WORDS {odd} /* packed inputs of layers 1, 3, ... */
#define BITNET_WORK_WORDS (BITNET_EVEN_WORDS + BITNET_ODD_WORDS)
#define BITNET_WORK_BYTES (4 * BITNET_WORK_WORDS)
#define BITNET_READ_ONLY_BYTES {read_only_bytes(model, encoding)}

/* The packed input of raw pixels: words[0 .. ceil(BITNET_INPUTS / 32) - 1] (padding bits 0). */
void bitnet_encode(const uint8_t *pixels, uint32_t *words);
/* The predicted class of raw pixels [BITNET_PIXELS]; work holds BITNET_WORK_WORDS words. */
int bitnet_predict(const uint8_t *pixels, uint32_t *work);

#ifdef BITNET_MODEL_DATA /* defined by bitnet_model.c only: one copy of the arrays */
typedef struct {{
    int32_t n_in, n_out, words;
    int32_t binary_inputs; /* 1: inputs are 0/1 (the first layer of a 0/1 encoding); 0: +-1 */
    const uint32_t *sign; /* [n_out][words] */
    const uint32_t *mask; /* [n_out][words]; 0: dense */
    const int8_t *bias; /* [n_out]; 0: threshold neurons */
    const int32_t *threshold; /* [n_out] T; 0: sign neurons */
    const int8_t *polarity; /* [n_out] s */
}} bitnet_layer;

static const uint16_t bitnet_pixel_thresholds[BITNET_CODE_THRESHOLDS] = {{{", ".join(map(str, thresholds))}}};
{data}
static const bitnet_layer bitnet_layers[BITNET_LAYERS] = {{
{(","+chr(10)).join(entries)}
}};
#endif /* BITNET_MODEL_DATA */
#endif /* BITNET_MODEL_H */
"""


RUNTIME_TEXT = """\
/* bitnet_model.c: the runtime of bitnet_model.h. C99, <stdint.h> only: no library call, no heap,
 * no static state. Integer arithmetic of bitnet.deploy.inference, per output neuron with sign bits w,
 * mask bits m and packed inputs x:
 *   +-1 inputs:  a = popcount(m) - 2 popcount((x XOR w) AND m) + b   (dense: n_in - 2 popcount(x XOR w) + b)
 *   0/1 inputs:  a = 2 popcount(x AND w) - popcount(x AND m) + b      (w lies inside m; dense: m = all ones)
 * hidden outputs +1 where a >= 0 (or s * a >= T for threshold neurons), the class is argmax a of the
 * last layer, ties to the lowest index. Padding bits are 0 in x, w and m, so they never count.
 */
#define BITNET_MODEL_DATA
#include "bitnet_model.h"

/* The compiler's popcount where the target has an instruction for it (elsewhere __builtin_popcount is
 * a library call), else the portable bit count; define BITNET_POPCOUNT to supply your own. */
#if !defined(BITNET_POPCOUNT) && defined(__GNUC__) && (defined(__POPCNT__) || defined(__aarch64__))
#define BITNET_POPCOUNT(x) ((int32_t)__builtin_popcount(x))
#endif
#ifndef BITNET_POPCOUNT
#define BITNET_POPCOUNT(x) bitnet_popcount(x)
static int32_t bitnet_popcount(uint32_t x) {
    x = x - ((x >> 1) & 0x55555555u);
    x = (x & 0x33333333u) + ((x >> 2) & 0x33333333u);
    x = (x + (x >> 4)) & 0x0f0f0f0fu;
    return (int32_t)((x * 0x01010101u) >> 24);
}
#endif

#if BITNET_THERMOMETER
static uint32_t bitnet_code_bit(uint8_t pixel, int32_t plane) {
    return pixel >= bitnet_pixel_thresholds[plane];
}
#else
static uint32_t bitnet_code_bit(uint8_t pixel, int32_t plane) {
    int32_t level = 0, b;
    for (b = 0; b < BITNET_CODE_THRESHOLDS; ++b) level += pixel >= bitnet_pixel_thresholds[b];
    return (uint32_t)(level >> (BITNET_PLANES - 1 - plane)) & 1u;
}
#endif

void bitnet_encode(const uint8_t *pixels, uint32_t *words) {
    int32_t input, plane = 0, pixel = 0;
    uint32_t word = 0;
    for (input = 0; input < BITNET_INPUTS; ++input) {
        word |= bitnet_code_bit(pixels[pixel], plane) << (input % 32);
        if (input % 32 == 31 || input == BITNET_INPUTS - 1) {
            words[input / 32] = word;
            word = 0;
        }
        if (++pixel == BITNET_PIXELS) {
            pixel = 0;
            ++plane;
        }
    }
}

static int32_t bitnet_score(const bitnet_layer *layer, int32_t row, const uint32_t *x) {
    const uint32_t *w = layer->sign + row * layer->words;
    const uint32_t *m = layer->mask ? layer->mask + row * layer->words : 0;
    int32_t total = 0, k;
    if (layer->binary_inputs && m) {
        for (k = 0; k < layer->words; ++k) total += 2 * BITNET_POPCOUNT(x[k] & w[k]) - BITNET_POPCOUNT(x[k] & m[k]);
    } else if (layer->binary_inputs) {
        for (k = 0; k < layer->words; ++k) total += 2 * BITNET_POPCOUNT(x[k] & w[k]) - BITNET_POPCOUNT(x[k]);
    } else if (m) {
        for (k = 0; k < layer->words; ++k) total += BITNET_POPCOUNT(m[k]) - 2 * BITNET_POPCOUNT((x[k] ^ w[k]) & m[k]);
    } else {
        for (k = 0; k < layer->words; ++k) total += BITNET_POPCOUNT(x[k] ^ w[k]);
        total = layer->n_in - 2 * total;
    }
    return total + (layer->bias ? layer->bias[row] : 0);
}

static uint32_t bitnet_fires(const bitnet_layer *layer, int32_t row, int32_t score) {
    return layer->threshold ? layer->polarity[row] * score >= layer->threshold[row] : score >= 0;
}

static void bitnet_hidden(const bitnet_layer *layer, const uint32_t *x, uint32_t *y) {
    int32_t row;
    uint32_t word = 0;
    for (row = 0; row < layer->n_out; ++row) {
        word |= bitnet_fires(layer, row, bitnet_score(layer, row, x)) << (row % 32);
        if (row % 32 == 31 || row == layer->n_out - 1) {
            y[row / 32] = word;
            word = 0;
        }
    }
}

static int bitnet_argmax(const bitnet_layer *layer, const uint32_t *x) {
    int32_t row, best = 0, best_score = bitnet_score(layer, 0, x);
    for (row = 1; row < layer->n_out; ++row) {
        int32_t score = bitnet_score(layer, row, x);
        if (score > best_score) {
            best = row;
            best_score = score;
        }
    }
    return (int)best;
}

int bitnet_predict(const uint8_t *pixels, uint32_t *work) {
    uint32_t *halves[2];
    int32_t l;
    halves[0] = work;
    halves[1] = work + BITNET_EVEN_WORDS;
    bitnet_encode(pixels, halves[0]);
    for (l = 0; l < BITNET_LAYERS - 1; ++l) {
        bitnet_hidden(&bitnet_layers[l], halves[l % 2], halves[(l + 1) % 2]);
    }
    return bitnet_argmax(&bitnet_layers[BITNET_LAYERS - 1], halves[(BITNET_LAYERS - 1) % 2]);
}
"""

HARNESS_TEXT = """\
/* main.c: a harness for bitnet_model.c. Reads raw images (BITNET_PIXELS uint8 bytes each, no header)
 * from the file named by the last argument, or stdin, and prints one predicted label per line;
 * with -e it prints each image's encoded input bits instead ('0' / '1', BITNET_INPUTS per line).
 *   cc -std=c99 -O2 -o bitnet main.c bitnet_model.c && ./bitnet images.u8
 */
#include <stdio.h>

#include "bitnet_model.h"

int main(int argc, char **argv) {
    static uint8_t pixels[BITNET_PIXELS];
    static uint32_t work[BITNET_WORK_WORDS];
    int encode_only = argc > 1 && argv[1][0] == '-' && argv[1][1] == 'e' && argv[1][2] == 0;
    const char *path = argc > 1 + encode_only ? argv[argc - 1] : 0;
    FILE *in = path ? fopen(path, "rb") : stdin;
    size_t got;
    if (!in) {
        perror(path);
        return 1;
    }
    while ((got = fread(pixels, 1, BITNET_PIXELS, in)) == BITNET_PIXELS) {
        if (encode_only) {
            int32_t i;
            bitnet_encode(pixels, work);
            for (i = 0; i < BITNET_INPUTS; ++i) putchar('0' + (int)((work[i / 32] >> (i % 32)) & 1u));
            putchar('\\n');
        } else {
            printf("%d\\n", bitnet_predict(pixels, work));
        }
    }
    if (got != 0 || ferror(in)) {
        fprintf(stderr, "error: the input is not a whole number of %d-byte images\\n", BITNET_PIXELS);
        return 1;
    }
    return 0;
}
"""


def sources(model, encoding: encodings.Encoding, description: str) -> dict[str, str]:
    """The files of the C runtime of `model` fed by `encoding`: {file name: text}."""
    return {HEADER: header_text(model, encoding, description), SOURCE: RUNTIME_TEXT, HARNESS: HARNESS_TEXT}


def write_runtime(path: str | os.PathLike, folder: str | os.PathLike) -> dict[str, Any]:
    """Write the C runtime of the bitnet-packed-v1/-v2 model at `path` into `folder` (read by the
    loader evaluation uses); return what a summary reports of it."""
    arrays, meta = export.load_npz(path)
    model = export.to_packed_model(arrays, meta)
    encoding = encodings.get_encoding(meta["encoding"], meta["thresholds"])
    fmt = str(arrays["format"])
    os.makedirs(folder, exist_ok=True)
    for name, text in sources(model, encoding, f"{os.path.basename(path)} ({fmt}, {encoding.name} input)").items():
        with open(os.path.join(folder, name), "w") as file:
            file.write(text)
    return {
        "format": fmt,
        "encoding": encoding.name,
        "pixels": model.layers[0].n_in // encoding.planes,
        "sizes": [model.layers[0].n_in, *(layer.n_out for layer in model.layers)],
        "read_only_bytes": read_only_bytes(model, encoding),
        "working_bytes": working_bytes(model),
    }
