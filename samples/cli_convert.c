/* mmpipe convert: Hugging Face folders and llama2.c checkpoints -> GGUF. */
#include "cli.h"

#include <stdlib.h>
#include <string.h>

static void convert_usage(FILE *f) {
    fprintf(f,
        "usage: mmpipe convert HF_FOLDER OUT.gguf [--type TYPE] [--tokenizer TOK.bin | --vocab FILE.gguf]\n"
        "       mmpipe convert LLAVA_FOLDER [OUT.gguf] --mmproj OUT-mmproj.gguf [--type TYPE]\n"
        "       mmpipe convert --llama2c MODEL.bin --tokenizer TOK.bin OUT.gguf [--type TYPE]\n"
        "\n"
        "Write a GGUF file (the llama.cpp format) that `mmpipe run` and llama.cpp can load.\n"
        "\n"
        "From a Hugging Face folder (config.json + model.safetensors or a sharded index) of model\n"
        "type llama, mistral, mixtral, qwen2 or qwen2_moe. Tensor names and metadata keys are\n"
        "llama.cpp's; for llama/mistral/mixtral the q/k weights are reordered for llama.cpp's\n"
        "RoPE exactly as llama.cpp's convert_hf_to_gguf.py does.\n"
        "From a llama2.c checkpoint (karpathy/llama2.c `run.c` format) and its tokenizer.bin.\n"
        "From a LLaVA folder (LlavaForConditionalGeneration): --mmproj writes the vision tower (cut\n"
        "after vision_feature_layer) and the MLP projector as a llama.cpp mmproj GGUF; OUT.gguf, when\n"
        "given, gets the language model. Other multimodal folders (text_config) convert their LLM.\n"
        "\n"
        "options:\n"
        "  --type TYPE        weight type: f32 (default), f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1.\n"
        "                     Norms, biases and MoE routers stay f32; a tensor whose rows do not\n"
        "                     fit the type's 32-element blocks is written as f16 (a note says so).\n"
        "  --tokenizer FILE   a llama2.c tokenizer.bin to embed as the GGUF tokenizer\n"
        "  --vocab FILE.gguf  copy the tokenizer.* keys of another GGUF file (HF folders only)\n"
        "  --llama2c FILE     convert this llama2.c checkpoint instead of an HF folder\n"
        "  --mmproj FILE      LLaVA folders: write the vision tower + projector to this mmproj GGUF\n"
        "  --name NAME        general.name (default: the input's name)\n"
        "  -q, --quiet        no notes on stderr\n"
        "  -h, --help         this help\n"
        "\n"
        "examples:\n"
        "  mmpipe convert --llama2c stories260K.bin --tokenizer tok512.bin stories260K.gguf\n"
        "  mmpipe convert ./Mistral-7B-v0.1 mistral-q8_0.gguf --type q8_0 --vocab mistral-vocab.gguf\n"
        "  mmpipe convert ./llava-1.5-7b-hf llava-f16.gguf --mmproj mmproj-llava-f16.gguf --type f16\n");
}

static void log_note(enum mmp_log_level lv, const char *msg, void *user) {
    (void)user;
    fprintf(stderr, "mmpipe convert: %s: %s\n", lv == MMP_LOG_WARN ? "note" : "info", msg);
}

int mmp_cli_convert(int argc, char **argv) {
    mmp_convert_params p = mmp_convert_params_default();
    const char *llama2c = NULL, *mmproj = NULL, *pos[2] = { NULL, NULL };
    int n_pos = 0;
    bool quiet = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (mmp_cli_is_help(a)) { convert_usage(stdout); return 0; }
        bool has = i + 1 < argc;
        if (!strcmp(a, "--type") || !strcmp(a, "--outtype")) {
            if (!has) goto missing;
            int t = mmp_type_from_name(argv[++i]);
            if (t < 0 || !mmp_convert_type_ok((enum mmp_type)t)) {
                fprintf(stderr, "mmpipe convert: --type %s: unknown or unsupported (f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1)\n", argv[i]);
                return 2;
            }
            p.out_type = (enum mmp_type)t;
        } else if (!strcmp(a, "--tokenizer")) { if (!has) goto missing; p.tokenizer_llama2c = argv[++i]; }
        else if (!strcmp(a, "--vocab")) { if (!has) goto missing; p.vocab_gguf = argv[++i]; }
        else if (!strcmp(a, "--llama2c")) { if (!has) goto missing; llama2c = argv[++i]; }
        else if (!strcmp(a, "--mmproj")) { if (!has) goto missing; mmproj = argv[++i]; }
        else if (!strcmp(a, "--name")) { if (!has) goto missing; p.name = argv[++i]; }
        else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) quiet = true;
        else if (a[0] == '-' && a[1]) { fprintf(stderr, "mmpipe convert: unknown option '%s' (see 'mmpipe convert --help')\n", a); return 2; }
        else if (n_pos < 2) pos[n_pos++] = a;
        else { fprintf(stderr, "mmpipe convert: too many arguments ('%s'); see 'mmpipe convert --help'\n", a); return 2; }
        continue;
    missing:
        fprintf(stderr, "mmpipe convert: %s needs a value (see 'mmpipe convert --help')\n", a);
        return 2;
    }
    if (!quiet) p.log = log_note;
    enum mmp_status st;
    const char *out;
    if (mmproj) {
        if (llama2c) { fprintf(stderr, "mmpipe convert: --mmproj is for LLaVA folders, not --llama2c\n"); return 2; }
        if (n_pos < 1) { convert_usage(stderr); return 2; }
        /* the mmproj first: it refuses a folder that is not LLaVA before the LLM is written */
        if (mmp_convert_llava_mmproj(pos[0], mmproj, &p)) return mmp_cli_fail("convert", NULL);
        if (!quiet) fprintf(stderr, "mmpipe convert: wrote %s (mmproj, %s)\n", mmproj, mmp_type_name(p.out_type));
        if (n_pos == 1) return 0;
    }
    if (llama2c) {
        if (n_pos != 1) { fprintf(stderr, "mmpipe convert: --llama2c needs exactly one output file (see --help)\n"); return 2; }
        if (p.vocab_gguf) { fprintf(stderr, "mmpipe convert: --vocab is for HF folders; use --tokenizer with --llama2c\n"); return 2; }
        out = pos[0];
        st = mmp_convert_llama2c_to_gguf(llama2c, p.tokenizer_llama2c, out, &p);
    } else {
        if (n_pos != 2) { convert_usage(stderr); return 2; }
        out = pos[1];
        st = mmp_convert_hf_to_gguf(pos[0], out, &p);
    }
    if (st) return mmp_cli_fail("convert", NULL);
    if (!quiet) fprintf(stderr, "mmpipe convert: wrote %s (%s)\n", out, mmp_type_name(p.out_type));
    return 0;
}
