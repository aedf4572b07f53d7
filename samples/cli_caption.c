/* mmpipe caption: describe / transcribe audio files with an audio-LLM (Qwen2-Audio-style: audio
 * encoder + projector + LLM), printing the answer as it is generated. A thin wrapper over the
 * stock pipelines: each clip goes through the model's audio pipeline ("qwen2-audio",
 * "ultravox" or "voxtral"), the prompt with the clips' embeddings through "chat"
 * (samples/cli_session.c). */
#include "cli.h"

#include <stdlib.h>
#include <string.h>

#define DEFAULT_PROMPT "Describe this audio in one sentence. If it contains speech, transcribe it."

static void caption_usage(FILE *f) {
    fprintf(f,
        "usage: mmpipe caption -m MODEL [--mmproj FILE] --audio PATH [-p PROMPT] [options]\n"
        "\n"
        "Describe or transcribe an audio file with an audio language model (Qwen2-Audio style:\n"
        "audio encoder + projector + LLM). A Hugging Face Qwen2-Audio folder holds everything;\n"
        "otherwise give the encoder + projector with --mmproj. Any format FFmpeg decodes works\n"
        "(wav, flac, mp3, ogg, opus, m4a, ...); it is resampled to 16 kHz mono. The answer goes\n"
        "to stdout; progress and timings go to stderr.\n"
        "\n"
        "The prompt goes through the model's chat template when it has one. The audio is put\n"
        "where the prompt says <audio> (or <__media__>), else before the prompt. It runs the\n"
        "stock pipelines of the model's audio family ('qwen2-audio', 'ultravox' or 'voxtral')\n"
        "for each clip and 'chat' for the answer: see 'mmpipe pipeline show chat'.\n"
        "\n"
        "options:\n"
        "  --audio PATH           the audio file (repeatable: several clips, in order)\n"
        "  --mmproj FILE          audio encoder + projector file or folder (GGUF mmproj or HF)\n"
        "  -p, --prompt TEXT      what to ask (default: \"" DEFAULT_PROMPT "\")\n"
        "  --chat-template NAME   use this template instead of the model's (%s);\n"
        "                         'none' sends the prompt as raw text\n"
        "  --max-seconds S        use at most the first S seconds of each file (default 600)\n"
        "%s"
        "  -h, --help             this help\n"
        "\n"
        "examples:\n"
        "  mmpipe caption -m Qwen2-Audio-7B-Instruct --audio jfk.flac --temp 0\n"
        "  mmpipe caption -m model.gguf --mmproj mmproj.gguf --audio talk.mp3 -p \"<audio>Transcribe:\"\n",
        mmp_chat_template_names(), mmp_cli_llm_opts_help());
}

int mmp_cli_caption(int argc, char **argv) {
    mmp_cli_llm_opts o;
    mmp_cli_llm_opts_init(&o);
    const char *mmproj = NULL, *prompt = DEFAULT_PROMPT, *tmpl_name = NULL;
    const char *audio[16];
    int n_audio = 0;
    double max_seconds = 600.0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (mmp_cli_is_help(a)) { caption_usage(stdout); return 0; }
        int r = mmp_cli_llm_opt("caption", argc, argv, &i, &o);
        if (r < 0) return 2;
        if (r > 0) continue;
        if (!strcmp(a, "--audio") || !strcmp(a, "--mmproj") || !strcmp(a, "-p") || !strcmp(a, "--prompt") ||
            !strcmp(a, "--chat-template") || !strcmp(a, "--max-seconds")) {
            if (i + 1 >= argc) { fprintf(stderr, "mmpipe caption: %s needs a value (see 'mmpipe caption --help')\n", a); return 2; }
            const char *v = argv[++i];
            if (!strcmp(a, "--audio")) {
                if (n_audio == (int)(sizeof audio / sizeof audio[0])) { fprintf(stderr, "mmpipe caption: at most 16 --audio files\n"); return 2; }
                audio[n_audio++] = v;
            } else if (!strcmp(a, "--mmproj")) mmproj = v;
            else if (!strcmp(a, "--chat-template")) tmpl_name = v;
            else if (!strcmp(a, "--max-seconds")) {
                char *end;
                max_seconds = strtod(v, &end);
                if (end == v || *end || !(max_seconds > 0 && max_seconds <= 86400)) {
                    fprintf(stderr, "mmpipe caption: bad value '%s' for --max-seconds (seconds, > 0)\n", v);
                    return 2;
                }
            } else prompt = v;
        } else { fprintf(stderr, "mmpipe caption: unknown argument '%s' (see 'mmpipe caption --help')\n", a); return 2; }
    }
    if (!o.model) { fprintf(stderr, "mmpipe caption: no model given: use -m MODEL (see 'mmpipe caption --help')\n"); return 2; }
    if (n_audio == 0) { fprintf(stderr, "mmpipe caption: no audio given: use --audio PATH (see 'mmpipe caption --help')\n"); return 2; }
    bool raw = tmpl_name && !strcmp(tmpl_name, "none");
    if (tmpl_name && !raw && mmp_chat_template_from_name(tmpl_name) < 0) {
        fprintf(stderr, "mmpipe caption: unknown chat template '%s'; known templates: %s, none\n", tmpl_name, mmp_chat_template_names());
        return 2;
    }
    if (o.n_predict < 0) o.n_predict = 256;
    if (!o.seed_set) o.sp.seed = mmp_cli_random_seed();
    mmp_audio_quiet_ffmpeg();

    int rc = 1;
    char *text = NULL, *user = NULL, *ans = NULL;
    mmp_cli_session ss;
    int orc = mmp_cli_session_open(&ss, "caption", &o, tmpl_name, true, mmproj);
    if (orc) { rc = orc; goto done; }
    for (int i = 0; i < n_audio; i++)
        if (mmp_cli_session_add_media(&ss, 1, audio[i], max_seconds)) goto done;
    /* the user message: the prompt, with one marker per clip in front unless it has them */
    {
        int n_mark = mmp_cli_count_markers(prompt);
        size_t pl = strlen(prompt);
        if (!(user = malloc(pl + (size_t)n_audio * 8 + 2))) goto done;
        user[0] = '\0';
        if (n_mark == 0) {
            for (int i = 0; i < n_audio; i++) strcat(user, "<audio>");
            if (!ss.raw) strcat(user, "\n");
        }
        strcat(user, prompt);
    }
    mmp_chat_msg msg = { "user", user };
    if (!(text = mmp_cli_session_render(&ss, &msg, 1))) goto done;
    if (mmp_cli_session_answer(&ss, text, &ans)) goto done;
    fprintf(stderr, "mmpipe caption: seed %llu\n", (unsigned long long)o.sp.seed);
    rc = 0;
done:
    free(ans);
    free(text);
    free(user);
    mmp_cli_session_close(&ss);
    return rc;
}
