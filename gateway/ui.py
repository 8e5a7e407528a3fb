"""The web page (Gradio), served by the gateway at `/`. Labels in Japanese, as in the original design.

It calls the same Triton pool as the HTTP API, in-process (no HTTP round trip to itself), and shows
progress as it streams in: RAG, Dart (the tags appear before painting starts), then each diffusion step.

Two paths:
- one click: text, 「生成開始」 -> RAG, selection, Dart, painting;
- edit first: 「タグ生成」 shows the selected tags (each with its reason) as an editable list:
  uncheck to remove, type to add, move up/down, and the other candidates one click away as
  suggestions; 「生成開始」 then paints from the edited list (Dart completes it, keeping it first).
  Editing the text empties the list, so the one-click path is back.
The list operations are plain functions over tag dicts (below), tested without a browser.
"""

from __future__ import annotations

import html
import io
from typing import TYPE_CHECKING

import gradio as gr

from sotai.client import GenerateRequest, GenerateResult, Progress
from sotai.diffusion.hires import HR_SCALE_RANGE, HR_UPSCALERS
from sotai.errors import InvalidInput, SotaiError
from sotai.limits import CFG_RANGE, DENOISING_RANGE, NUM_IMAGES_RANGE, RATINGS, SCHEDULERS, SEED_RANGE, SIZE_PRESETS, STEPS_RANGE, STEPS_RANGE_OR_ZERO, TAG_MAX_CHARS, TAGS_MAX, check_text
from sotai.params import GENERATION_PARAMS, GenerationParams

if TYPE_CHECKING:
    from .state import GatewayState

STAGE_LABELS = {"rag": "タグ候補を検索中（RAG）", "dart": "タグを補完中（Dart）", "diffusion": "画像を生成中"}
SIGNAL_LABELS = {"japanese_name": "日本語名", "alias": "別名", "gloss": "辞書の訳語", "embedding": "意味の近さ",
                 "dart": "Dartが補完", "user": "指定タグ", "prompt": "プロンプト"}
TAG_HEADERS = ["タグ", "カテゴリ", "スコア", "理由"]
SCHEDULER_LABELS = {"euler_a": "Euler a", "euler": "Euler", "dpmpp_2m_karras": "DPM++ 2M Karras"}


def size_choices(default: tuple[int, int]) -> list[str]:
    """The server's default size first (small enough for CPU), then Animagine's recommended sizes."""
    first = f"{default[0]}x{default[1]}"
    return [first] + [name for name in SIZE_PRESETS if name != first]


def reason_text(reason) -> str:
    if not isinstance(reason, dict):
        return str(reason or "")
    signal = SIGNAL_LABELS.get(reason.get("signal", ""), reason.get("signal", ""))
    span = reason.get("span", "")
    return f"「{span}」→ {signal}" if span and reason.get("signal") not in ("user", "prompt") else signal


def tag_rows(tags: list[dict]) -> list[list]:
    return [[t.get("tag", ""), t.get("category", ""), round(float(t.get("score", 0.0)), 3), reason_text(t.get("reason"))]
            for t in tags]


# -- the tag editor: pure functions over lists of {tag, score, category, reason} --------------

USER_REASON = {"span": "", "signal": "user"}


def tag_key(tag: str) -> str:
    """One spelling for comparing tags: Dart writes `long hair`, RAG `long_hair`."""
    return "_".join(str(tag).split())


def tag_label(t: dict) -> str:
    """`tag — reason`: what the list and the suggestions show for a tag."""
    reason = t.get("reason") if isinstance(t.get("reason"), dict) else {}
    why = reason_text(reason)
    if reason.get("not_selected"):
        why += f"（{reason['not_selected']}）"
    return f"{t['tag']} — {why}" if why else t["tag"]


def selected_from(dart_tags: list[dict]) -> list[dict]:
    """The selection step's tags out of a Dart result (Dart's own additions are left to painting)."""
    out = []
    for t in dart_tags:
        if (t.get("reason") or {}).get("signal") != "dart":
            out.append({**t, "tag": tag_key(t["tag"])})
    return out


def suggestions_from(candidates: list[dict], current: list[dict]) -> list[dict]:
    have = {tag_key(t["tag"]) for t in current}
    return [{**c, "tag": tag_key(c["tag"])} for c in candidates if tag_key(c["tag"]) not in have]


def keep_checked(current: list[dict], checked: list[str]) -> list[dict]:
    keep = {tag_key(t) for t in checked or []}
    return [t for t in current if t["tag"] in keep]


def move_tag(current: list[dict], name: str, step: int) -> list[dict]:
    """Move `name` one place earlier (step -1) or later (+1); the prompt follows the list's order."""
    out = list(current)
    i = next((k for k, t in enumerate(out) if t["tag"] == tag_key(name or "")), None)
    if i is None:
        return out
    j = min(max(i + step, 0), len(out) - 1)
    out.insert(j, out.pop(i))
    return out


def add_tag(current: list[dict], suggestions: list[dict], name: str) -> tuple[list[dict], list[dict]]:
    """Append a suggestion (with its reason) or a typed tag; InvalidInput names the field and limit."""
    key = tag_key(check_text("tag", name or "", max_chars=TAG_MAX_CHARS))
    if any(t["tag"] == key for t in current):
        return current, suggestions
    if len(current) >= TAGS_MAX:
        raise InvalidInput("tags", f"<{len(current) + 1} tags>", f"must hold 1..{TAGS_MAX} tags")
    chosen = next((s for s in suggestions if s["tag"] == key), None)
    entry = chosen or {"tag": key, "score": 1.0, "category": "general", "reason": {**USER_REASON, "span": key}}
    if chosen:
        entry = {**chosen, "reason": {k: v for k, v in chosen.get("reason", {}).items() if k != "not_selected"}}
    return current + [entry], [s for s in suggestions if s["tag"] != key]


def progress_html(event: Progress | None, done: bool = False) -> str:
    if done:
        fraction, label = 1.0, "完了"
    elif event is None:
        fraction, label = 0.0, "準備中"
    else:
        fraction = event.fraction
        label = STAGE_LABELS.get(event.stage, event.stage)
        if event.stage == "diffusion" and event.total:
            label += f" {event.step}/{event.total}"
    percent = round(fraction * 100)
    return (f'<div class="sotai-progress" data-fraction="{fraction:.3f}">'
            f'<div style="background:#ddd;border-radius:4px;height:10px">'
            f'<div style="background:#e8618c;width:{percent}%;height:10px;border-radius:4px"></div></div>'
            f'<span>{html.escape(label)}（{percent}%）</span></div>')


def _image(png: bytes):
    from PIL import Image

    return Image.open(io.BytesIO(png))


_DEFAULTS = {p.name: p.default for p in GENERATION_PARAMS}


def ui_params(cfg_scale, steps, size, num_images, negative_prompt, seed, rating, scheduler, init_image=None,
              denoising_strength=_DEFAULTS["denoising_strength"], enable_hr=_DEFAULTS["enable_hr"],
              hr_scale=_DEFAULTS["hr_scale"], hr_upscaler=_DEFAULTS["hr_upscaler"],
              hr_second_pass_steps=_DEFAULTS["hr_second_pass_steps"]) -> GenerationParams:
    """The page's settings as GenerationParams; a dropped picture (PIL) becomes img2img's init image (PNG);
    the hires fix (A1111's) paints at the size chosen, then at hr_scale times it."""
    width, height = (int(v) for v in size.split("x"))
    png = b""
    if init_image is not None:
        buf = io.BytesIO()
        init_image.convert("RGB").save(buf, format="PNG")
        png = buf.getvalue()
    return GenerationParams(
        steps=int(steps), cfg_scale=float(cfg_scale), width=width, height=height,
        seed=int(seed) if seed is not None else -1, negative_prompt=negative_prompt or "",
        num_images=int(num_images), scheduler=scheduler, rating=rating, init_image=png,
        denoising_strength=float(denoising_strength), enable_hr=bool(enable_hr), hr_scale=float(hr_scale),
        hr_upscaler=hr_upscaler, hr_second_pass_steps=int(hr_second_pass_steps),
    )


def build_ui(state: "GatewayState") -> gr.Blocks:
    s = state.settings
    defaults = GenerationParams.from_settings(s)
    sizes = size_choices((defaults.width, defaults.height))

    def editor(current: list[dict], suggestions: list[dict]):
        """The editor's components for a list: checkboxes, move choices, suggestions, the tags to paint."""
        names = [t["tag"] for t in current]
        return (current, suggestions,
                gr.update(choices=[(tag_label(t), t["tag"]) for t in current], value=names),
                gr.update(choices=names, value=None),
                gr.update(choices=[(tag_label(t), t["tag"]) for t in suggestions], value=None),
                ", ".join(names))

    async def make_tags(text, *settings):
        params = ui_params(*settings)
        try:
            request = GenerateRequest(text=text or "", params=params).checked()
            result = await state.pool.tags(request)
            # The ranked candidates, for the suggestions (the pool's failover, as for every call).
            candidates = await state.pool._with_failover(lambda c: c.candidates(request.text, request.top_k))
        except InvalidInput as exc:
            raise gr.Error(f"入力エラー: {exc}") from None
        except SotaiError as exc:
            raise gr.Error(f"タグ生成に失敗しました: {exc}") from None
        current = selected_from(result.tags)
        return editor(current, suggestions_from(candidates, current))

    def on_checked(current, suggestions, checked):
        kept = keep_checked(current, checked)
        removed = [t for t in current if t not in kept]
        return editor(kept, removed + suggestions)

    def on_move(current, suggestions, name, step):
        return editor(move_tag(current, name, step), suggestions)

    def on_add(current, suggestions, name):
        try:
            current, suggestions = add_tag(current, suggestions, name)
        except InvalidInput as exc:
            raise gr.Error(f"入力エラー: {exc}") from None
        return (*editor(current, suggestions), "")

    def on_suggestion(current, suggestions, name):
        if not name:
            return editor(current, suggestions)
        return editor(*add_tag(current, suggestions, name))

    async def generate(text, current, *settings):
        params = ui_params(*settings)
        try:
            # The edited list when there is one (「タグ生成」), else the text in one click.
            if current:
                request = GenerateRequest(tags=tuple(t["tag"] for t in current), params=params).checked()
            else:
                request = GenerateRequest(text=text or "", params=params).checked()
        except InvalidInput as exc:
            raise gr.Error(f"入力エラー: {exc}") from None
        rows: list[list] = []
        prompt = ""
        yield progress_html(None), None, [], rows, prompt, None
        try:
            with state.board.job(request) as job:
                async for event in state.pool.stream(job.painting(request)):  # named: skip/interrupt reach it
                    if isinstance(event, Progress):
                        job.update(event)
                        if event.tags is not None:
                            rows, prompt = tag_rows(event.tags), event.prompt or ""
                        preview = _image(event.preview) if event.preview else gr.skip()
                        yield progress_html(event), preview, gr.skip(), rows, prompt, gr.skip()
                    elif isinstance(event, GenerateResult):
                        gallery = [(_image(png), f"seed {event.seed}") for png in event.images]
                        yield progress_html(None, done=True), gr.skip(), gallery, tag_rows(event.tags), event.prompt, event.seed
        except InvalidInput as exc:
            raise gr.Error(f"入力エラー: {exc}") from None
        except SotaiError as exc:
            raise gr.Error(f"生成に失敗しました: {exc}") from None

    # delete_cache: generated PNGs Gradio keeps to serve the gallery are removed after an hour.
    with gr.Blocks(title="SotaiGenerator", analytics_enabled=False, delete_cache=(3600, 3600)) as ui:
        gr.Markdown("# SotaiGenerator\n日本語の文章から Danbooru タグを作り、アニメ調の画像を生成します。")
        if s.profile == "tiny":
            gr.Markdown("※ tiny プロファイル：ランダム重みの代替モデルのため、画像はノイズです。"
                        "本物のモデルは `make export PROFILE=animagine`（GPU ホスト）で用意します。")
        with gr.Row():
            with gr.Column():
                text = gr.Textbox(label="プロンプト（生成したい画像の説明）", lines=3, elem_id="sotai-text",
                                  placeholder="例：銀髪の少女が夜の桜の下で微笑んでいる")
                with gr.Accordion("詳細設定", open=False):
                    cfg_scale = gr.Slider(*CFG_RANGE, value=defaults.cfg_scale, step=0.5, label="CFGスケール")
                    steps = gr.Slider(*STEPS_RANGE, value=defaults.steps, step=1, label="ステップ数")
                    size = gr.Dropdown(sizes, value=sizes[0], label="画像サイズ（幅x高さ）")
                    num_images = gr.Slider(*NUM_IMAGES_RANGE, value=1, step=1, label="生成枚数")
                    negative_prompt = gr.Textbox(label="ネガティブプロンプト", lines=2)
                    seed = gr.Number(value=-1, precision=0, minimum=SEED_RANGE[0], maximum=SEED_RANGE[1],
                                     label="シード（-1 でランダム）")
                    rating = gr.Dropdown(list(RATINGS), value=defaults.rating, label="レーティング")
                    scheduler = gr.Dropdown([(SCHEDULER_LABELS[k], k) for k in SCHEDULERS], value=defaults.scheduler,
                                            label="サンプラー")
                with gr.Accordion("img2img（元画像から描き直す）", open=False):
                    init_image = gr.Image(label="元画像（ドロップ）", type="pil", sources=["upload", "clipboard"],
                                          elem_id="sotai-init-image")
                    denoising_strength = gr.Slider(*DENOISING_RANGE, value=defaults.denoising_strength, step=0.05,
                                                   label="描き直しの強さ（denoising strength、Hires fix にも）")
                with gr.Accordion("Hires fix（拡大してもう一度描く）", open=False):
                    enable_hr = gr.Checkbox(value=False, label="Hires fix を使う", elem_id="sotai-enable-hr")
                    hr_scale = gr.Slider(*HR_SCALE_RANGE, value=defaults.hr_scale, step=0.25, label="拡大率")
                    hr_upscaler = gr.Dropdown(list(HR_UPSCALERS), value=defaults.hr_upscaler, label="アップスケーラー")
                    hr_second_pass_steps = gr.Slider(*STEPS_RANGE_OR_ZERO, value=defaults.hr_second_pass_steps, step=1,
                                                     label="2 回目のステップ数（0 = ステップ数と同じ）")
                with gr.Row():
                    make_button = gr.Button("タグ生成", elem_id="sotai-make-tags")
                    button = gr.Button("生成開始", variant="primary", elem_id="sotai-generate")
                current = gr.State([])
                suggestions = gr.State([])
                with gr.Group():
                    edit_tags = gr.CheckboxGroup(label="選択されたタグ（チェックを外すと削除・上から順にプロンプトへ）",
                                                 elem_id="sotai-edit-tags")
                    with gr.Row():
                        move_which = gr.Dropdown(label="並べ替えるタグ", choices=[], elem_id="sotai-move-tag")
                        move_up = gr.Button("↑ 前へ", elem_id="sotai-move-up", size="sm")
                        move_down = gr.Button("↓ 後へ", elem_id="sotai-move-down", size="sm")
                    with gr.Row():
                        add_box = gr.Textbox(label="タグを追加（Danbooru のタグ名）", placeholder="例：holding_umbrella",
                                             elem_id="sotai-add-tag")
                        add_button = gr.Button("追加", elem_id="sotai-add", size="sm")
                    suggest = gr.Radio(label="候補（クリックで追加）", choices=[], elem_id="sotai-suggestions")
                    edited = gr.Textbox(label="生成に使うタグ（空なら文章から自動）", interactive=False,
                                        elem_id="sotai-edited")
            with gr.Column():
                status = gr.HTML(progress_html(None), label="進行状況", elem_id="sotai-status")
                preview = gr.Image(label="プレビュー", type="pil", format="png", interactive=False, height=160,
                                   elem_id="sotai-preview")
                gallery = gr.Gallery(label="生成結果", format="png", columns=2, elem_id="sotai-gallery")
                tags = gr.Dataframe(headers=TAG_HEADERS, label="タグと理由", interactive=False, wrap=True,
                                    column_widths=["32%", "16%", "12%", "40%"],
                                    elem_id="sotai-tags")
                prompt = gr.Textbox(label="最終プロンプト", interactive=False, elem_id="sotai-prompt")
                seed_used = gr.Number(label="使用したシード", precision=0, interactive=False, elem_id="sotai-seed")
        settings_inputs = [cfg_scale, steps, size, num_images, negative_prompt, seed, rating, scheduler, init_image,
                           denoising_strength, enable_hr, hr_scale, hr_upscaler, hr_second_pass_steps]
        editor_outputs = [current, suggestions, edit_tags, move_which, suggest, edited]
        make_button.click(make_tags, inputs=[text, *settings_inputs], outputs=editor_outputs,
                          api_visibility="private", concurrency_limit=None)
        edit_tags.input(on_checked, inputs=[current, suggestions, edit_tags], outputs=editor_outputs,
                        api_visibility="private")
        move_up.click(lambda c, s, n: on_move(c, s, n, -1), inputs=[current, suggestions, move_which],
                      outputs=editor_outputs, api_visibility="private")
        move_down.click(lambda c, s, n: on_move(c, s, n, +1), inputs=[current, suggestions, move_which],
                        outputs=editor_outputs, api_visibility="private")
        for trigger in (add_button.click, add_box.submit):
            trigger(on_add, inputs=[current, suggestions, add_box], outputs=[*editor_outputs, add_box],
                    api_visibility="private")
        suggest.input(on_suggestion, inputs=[current, suggestions, suggest], outputs=editor_outputs,
                      api_visibility="private")
        # A new text is a new scene: the list of the old one would paint the wrong picture.
        text.input(lambda: editor([], []), outputs=editor_outputs, api_visibility="private")
        button.click(
            generate,
            inputs=[text, current, *settings_inputs],
            outputs=[status, preview, gallery, tags, prompt, seed_used],
            api_visibility="private",
            concurrency_limit=None,  # Triton queues and batches; the page need not serialise users
        )
    return ui
