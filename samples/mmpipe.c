/* mmpipe — command-line tool. Each subcommand lives in samples/cli_<name>.c and uses only the
 * public API. */
#include "cli.h"

#include <stdio.h>
#include <string.h>

static const mmp_cli_command commands[] = {
    { "info",  "describe a model file (GGUF, safetensors) or folder (Hugging Face, diffusers)", mmp_cli_info },
    { "stage", "list the stage kinds, or run one stage on tensors read from files", mmp_cli_stage },
    { "convert", "convert a Hugging Face folder or a llama2.c checkpoint to GGUF", mmp_cli_convert },
    { "run",   "generate text from a prompt with a language model (streams tokens)", mmp_cli_run },
    { "chat",  "chat with a language model using its chat template", mmp_cli_chat },
    { "tokenize", "show the token ids of a text, or the text of token ids", mmp_cli_tokenize },
    { "caption", "describe or transcribe an audio file with an audio language model", mmp_cli_caption },
    { "pipeline", "list the stock pipelines, show one's typed graph (or DOT), or run any pipeline on inputs", mmp_cli_pipeline },
    { "txt2img", "draw a picture from a text prompt with a Stable Diffusion model (writes a PNG)", mmp_cli_txt2img },
};
#define N_COMMANDS (int)(sizeof commands / sizeof commands[0])

static void usage(FILE *f) {
    fprintf(f,
        "mmpipe %s — run multimodal LLM pipelines locally (image/audio/text in, text/image out)\n"
        "\n"
        "usage: mmpipe COMMAND [options]\n"
        "\n"
        "commands:\n", mmp_version());
    for (int i = 0; i < N_COMMANDS; i++) fprintf(f, "  %-8s %s\n", commands[i].name, commands[i].summary);
    fprintf(f,
        "  version  print the version\n"
        "\n"
        "Run 'mmpipe COMMAND --help' for the options of one command. Examples:\n"
        "  mmpipe run -m models/stories260K.gguf -p \"Once upon a time\"  # a story from the shipped model\n"
        "  mmpipe chat -m LLAVA_FOLDER --image photo.jpg -p \"What is in this picture?\"\n"
        "  mmpipe caption -m QWEN2_AUDIO_FOLDER --audio speech.flac\n"
        "  mmpipe txt2img -m SD15_FOLDER_OR_FILE -p \"a red fox in snow\" -o fox.png\n"
        "  mmpipe info models/stories260K.gguf              # what is inside a model file\n"
        "  mmpipe convert HF_FOLDER out.gguf --type q8_0    # Hugging Face -> GGUF\n"
        "  mmpipe pipeline show image-chat                  # a stock pipeline's typed stage graph\n"
        "  mmpipe pipeline run chat --set model=models/stories260K.gguf --set template=none --in text=\"Once\"\n"
        "  mmpipe stage --list                              # every stage kind and its ports\n");
}

int mmp_cli_fail(const char *cmd, const char *what) {
    const char *e = mmp_last_error();
    fprintf(stderr, "mmpipe %s: %s%s%s\n", cmd, what ? what : "", (what && *e) ? ": " : "", e);
    return 1;
}

int mmp_cli_is_help(const char *arg) {
    return arg && (!strcmp(arg, "-h") || !strcmp(arg, "--help"));
}

const char *mmp_cli_bytes(double n, char *buf, size_t size) {
    const char *unit[] = { "B", "KiB", "MiB", "GiB", "TiB" };
    int u = 0;
    while (n >= 1024 && u < 4) { n /= 1024; u++; }
    if (u == 0) snprintf(buf, size, "%.0f B", n);
    else snprintf(buf, size, "%.2f %s", n, unit[u]);
    return buf;
}

int main(int argc, char **argv) {
    if (argc < 2) { usage(stderr); return 2; }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) { usage(stdout); return 0; }
    if (!strcmp(cmd, "version") || !strcmp(cmd, "--version")) { printf("mmpipe %s\n", mmp_version()); return 0; }
    for (int i = 0; i < N_COMMANDS; i++)
        if (!strcmp(cmd, commands[i].name)) return commands[i].main(argc - 1, argv + 1);
    fprintf(stderr, "mmpipe: unknown command '%s' (see 'mmpipe --help')\n", cmd);
    return 2;
}
