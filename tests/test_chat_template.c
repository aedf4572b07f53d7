/* Chat templates: detection from real template texts and rendering. Each expected string is
 * written out by hand from the Jinja template quoted next to it (rendered as transformers does:
 * trim_blocks + lstrip_blocks, so text after a {% %} tag's newline is dropped but text after
 * {{ }} is kept), not produced by the code under test. */
#include "testutil.h"

#include <stdlib.h>
#include <string.h>

static const mmp_chat_msg k_conv[4] = {
    { "system", "You are kind." },
    { "user", "Hello" },
    { "assistant", "Hi there!" },
    { "user", "How are you?" },
};

static void expect(enum mmp_chat_template t, const mmp_chat_msg *m, size_t n, bool gen, const char *bos,
                   const char *eos, const char *want) {
    char *out = NULL;
    size_t len = 0;
    enum mmp_status st = mmp_chat_apply(t, m, n, gen, bos, eos, &out, &len);
    if (st) fail_msg("%s: %s", mmp_chat_template_name(t), mmp_last_error());
    if (strcmp(out, want)) fail_msg("%s:\n got  [%s]\n want [%s]", mmp_chat_template_name(t), out, want);
    assert_int_equal(len, strlen(want));
    free(out);
}

static void test_chatml(void **state) {
    (void)state;
    /* {% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}
     * {% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %} */
    expect(MMP_CHAT_CHATML, k_conv, 4, true, "<s>", "</s>",
           "<|im_start|>system\nYou are kind.<|im_end|>\n"
           "<|im_start|>user\nHello<|im_end|>\n"
           "<|im_start|>assistant\nHi there!<|im_end|>\n"
           "<|im_start|>user\nHow are you?<|im_end|>\n"
           "<|im_start|>assistant\n");
    expect(MMP_CHAT_CHATML, k_conv + 1, 1, false, "", "", "<|im_start|>user\nHello<|im_end|>\n");
}

static void test_llama2(void **state) {
    (void)state;
    /* Llama-2-7b-chat-hf: {% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}
     * {% set system_message = messages[0]['content'] %}...{% if loop.index0 == 0 and system_message != false %}
     * {% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}...
     * {% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}
     * {% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %} */
    expect(MMP_CHAT_LLAMA2, k_conv, 4, true, "<s>", "</s>",
           "<s>[INST] <<SYS>>\nYou are kind.\n<</SYS>>\n\nHello [/INST] Hi there! </s><s>[INST] How are you? [/INST]");
    const mmp_chat_msg m[1] = { { "user", "  padded  " } }; /* content.strip() */
    expect(MMP_CHAT_LLAMA2, m, 1, true, "<s>", "</s>", "<s>[INST] padded [/INST]");
}

static void test_mistral(void **state) {
    (void)state;
    /* Mistral-7B-Instruct-v0.2: {{ bos_token }}{% for message in messages %}...{% if message['role'] == 'user' %}
     * {{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}
     * {{ message['content'] + eos_token}}{% else %}{{ raise_exception('Only user and assistant roles are supported!') }} */
    expect(MMP_CHAT_MISTRAL, k_conv + 1, 3, true, "<s>", "</s>", "<s>[INST] Hello [/INST]Hi there!</s>[INST] How are you? [/INST]");
    char *out = NULL;
    assert_int_equal(mmp_chat_apply(MMP_CHAT_MISTRAL, k_conv, 4, true, "<s>", "</s>", &out, NULL), MMP_ERR_INVALID_ARG);
    assert_null(out);
    assert_non_null(strstr(mmp_last_error(), "system"));
    /* roles must alternate */
    const mmp_chat_msg bad[2] = { { "user", "a" }, { "user", "b" } };
    assert_int_equal(mmp_chat_apply(MMP_CHAT_MISTRAL, bad, 2, true, "<s>", "</s>", &out, NULL), MMP_ERR_INVALID_ARG);
    assert_non_null(strstr(mmp_last_error(), "alternate"));
}

static void test_llama3(void **state) {
    (void)state;
    /* Meta-Llama-3-8B-Instruct: {% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'
     * + message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}
     * {% endif %}{{ content }}...{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }} */
    const mmp_chat_msg m[2] = { { "system", " You are kind.\n" }, { "user", "Hello" } };
    expect(MMP_CHAT_LLAMA3, m, 2, true, "<|begin_of_text|>", "<|end_of_text|>",
           "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are kind.<|eot_id|>"
           "<|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|>"
           "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

static void test_phi3(void **state) {
    (void)state;
    /* Phi-3-mini-4k-instruct: {{'<|user|>\n' + message['content'] + '<|end|>\n'}} (same for system/assistant)
     * {% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% else %}{{ eos_token }}{% endif %} */
    expect(MMP_CHAT_PHI3, k_conv + 1, 3, true, "<s>", "<|endoftext|>",
           "<|user|>\nHello<|end|>\n<|assistant|>\nHi there!<|end|>\n<|user|>\nHow are you?<|end|>\n<|assistant|>\n");
    expect(MMP_CHAT_PHI3, k_conv + 1, 1, false, "<s>", "<|endoftext|>", "<|user|>\nHello<|end|>\n<|endoftext|>");
}

static void test_gemma(void **state) {
    (void)state;
    /* gemma-7b-it: {{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not
     * supported') }}...{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}
     * {% if add_generation_prompt %}{{'<start_of_turn>model\n'}}{% endif %}, role 'model' for 'assistant' */
    expect(MMP_CHAT_GEMMA, k_conv + 1, 3, true, "<bos>", "<eos>",
           "<bos><start_of_turn>user\nHello<end_of_turn>\n<start_of_turn>model\nHi there!<end_of_turn>\n"
           "<start_of_turn>user\nHow are you?<end_of_turn>\n<start_of_turn>model\n");
    char *out = NULL;
    assert_int_equal(mmp_chat_apply(MMP_CHAT_GEMMA, k_conv, 4, true, "<bos>", "<eos>", &out, NULL), MMP_ERR_INVALID_ARG);
    assert_non_null(strstr(mmp_last_error(), "System role not supported"));
}

static void test_zephyr(void **state) {
    (void)state;
    /* zephyr-7b-beta: {% for message in messages %}\n{% if message['role'] == 'user' %}\n
     * {{ '<|user|>\n' + message['content'] + eos_token }}\n ... {% if loop.last and add_generation_prompt %}\n
     * {{ '<|assistant|>' }}\n{% endif %}\n{% endfor %} -- trim_blocks drops the newline after each {% %} tag, the
     * one after each {{ }} stays. */
    expect(MMP_CHAT_ZEPHYR, k_conv, 2, true, "<s>", "</s>",
           "<|system|>\nYou are kind.</s>\n<|user|>\nHello</s>\n<|assistant|>\n");
}

/* Real template texts (abridged to the parts that matter for detection) -> names. */
static void test_detect(void **state) {
    (void)state;
    static const struct { const char *jinja; enum mmp_chat_template t; } cases[] = {
        { "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}", MMP_CHAT_CHATML },
        { "{% if messages[0]['role'] == 'system' %}...{% set content = '<<SYS>>\\\\n' + system_message %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}", MMP_CHAT_LLAMA2 },
        { "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% endif %}{% endfor %}", MMP_CHAT_MISTRAL },
        { "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' %}", MMP_CHAT_LLAMA3 },
        { "{% for message in messages %}{% if message['role'] == 'user' %}{{'<|user|>\\n' + message['content'] + '<|end|>\\n'}}{% endif %}{% endfor %}{{ '<|assistant|>\\n' }}", MMP_CHAT_PHI3 },
        { "{{ bos_token }}{% for message in messages %}{{ '<start_of_turn>' + role + '\\n' + message['content'] | trim + '<end_of_turn>\\n' }}{% endfor %}", MMP_CHAT_GEMMA },
        { "{% for message in messages %}\n{% if message['role'] == 'user' %}\n{{ '<|user|>\\n' + message['content'] + eos_token }}\n{% endif %}{{ '<|assistant|>' }}{% endfor %}", MMP_CHAT_ZEPHYR },
        { "ChatML", MMP_CHAT_CHATML },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        enum mmp_chat_template t;
        assert_int_equal(mmp_chat_detect(cases[i].jinja, &t), MMP_OK);
        if (t != cases[i].t) fail_msg("case %zu: detected %s, want %s", i, mmp_chat_template_name(t), mmp_chat_template_name(cases[i].t));
    }
    enum mmp_chat_template t;
    assert_int_equal(mmp_chat_detect("{{ 'Human: ' + message['content'] }}", &t), MMP_ERR_UNSUPPORTED);
    assert_non_null(strstr(mmp_last_error(), "chatml, llama2, mistral, llama3, phi3, gemma, zephyr"));
    /* resolve: an override wins; an unknown name lists the known ones; no template asks for one */
    assert_int_equal(mmp_chat_resolve("gemma", cases[0].jinja, &t), MMP_OK);
    assert_int_equal(t, MMP_CHAT_GEMMA);
    assert_int_equal(mmp_chat_resolve("vicuna", NULL, &t), MMP_ERR_NOT_FOUND);
    assert_non_null(strstr(mmp_last_error(), "vicuna"));
    assert_non_null(strstr(mmp_last_error(), "chatml"));
    assert_int_equal(mmp_chat_resolve(NULL, NULL, &t), MMP_ERR_NOT_FOUND);
    assert_non_null(strstr(mmp_last_error(), "--chat-template"));
    assert_string_equal(mmp_chat_template_end_of_turn(MMP_CHAT_LLAMA3, "x"), "<|eot_id|>");
    assert_string_equal(mmp_chat_template_end_of_turn(MMP_CHAT_MISTRAL, "</s>"), "</s>");
}

static void test_bad_messages(void **state) {
    (void)state;
    char *out = NULL;
    const mmp_chat_msg m[1] = { { "tool", "x" } };
    assert_int_equal(mmp_chat_apply(MMP_CHAT_CHATML, m, 1, true, NULL, NULL, &out, NULL), MMP_ERR_INVALID_ARG);
    assert_non_null(strstr(mmp_last_error(), "tool"));
    const mmp_chat_msg m2[1] = { { "user", NULL } };
    assert_int_equal(mmp_chat_apply(MMP_CHAT_CHATML, m2, 1, true, NULL, NULL, &out, NULL), MMP_ERR_INVALID_ARG);
    assert_int_equal(mmp_chat_apply((enum mmp_chat_template)99, k_conv, 1, true, NULL, NULL, &out, NULL), MMP_ERR_INVALID_ARG);
    assert_null(out);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chatml),  cmocka_unit_test(test_llama2), cmocka_unit_test(test_mistral),
        cmocka_unit_test(test_llama3),  cmocka_unit_test(test_phi3),   cmocka_unit_test(test_gemma),
        cmocka_unit_test(test_zephyr),  cmocka_unit_test(test_detect), cmocka_unit_test(test_bad_messages),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
