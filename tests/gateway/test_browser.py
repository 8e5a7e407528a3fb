"""The web page in a real headless Chromium (Debian's chromium + chromedriver, driven by selenium).

Type a Japanese sentence, click 「生成開始」, and see progress, an image and the tags with their
reasons appear. The screenshot is saved under out/test/.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

SCENE = "銀髪の少女が夜の桜の下で微笑んでいる"
INSTALL = Path(__file__).with_name("install_browser.sh")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--window-size=1280,1400", "--lang=ja"]


@pytest.fixture(scope="module")
def browser():
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        subprocess.run(["bash", str(INSTALL)], check=False, timeout=900)
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        pytest.skip(f"chromium/chromedriver are not installed: run `sudo bash {INSTALL}`")
    webdriver = pytest.importorskip("selenium.webdriver")
    profile = tempfile.mkdtemp(prefix="sotai-chromium-")  # a fresh profile every run
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    session = webdriver.Chrome(options=options, service=webdriver.ChromeService(driver))
    session.set_page_load_timeout(60)
    yield session
    session.quit()
    shutil.rmtree(profile, ignore_errors=True)


def test_japanese_sentence_to_image_and_tags_in_the_page(browser, gateway, out_dir):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(gateway.url + "/")
    box = WebDriverWait(browser, 60).until(lambda d: d.find_element(By.CSS_SELECTOR, "#sotai-text textarea"))
    assert "詳細設定" in browser.page_source
    box.send_keys(SCENE)
    browser.find_element(By.ID, "sotai-generate").click()
    assert browser.find_element(By.ID, "sotai-generate").text == "生成開始"

    images = WebDriverWait(browser, 180).until(
        lambda d: [i for i in d.find_elements(By.CSS_SELECTOR, "#sotai-gallery img") if i.get_attribute("src")])
    assert images[0].get_attribute("naturalWidth") == "512"
    WebDriverWait(browser, 30).until(lambda d: "完了" in d.find_element(By.ID, "sotai-status").text)
    tags = browser.find_element(By.ID, "sotai-tags").text
    assert "タグ" in tags and "理由" in tags
    assert "→" in tags, "each RAG tag shows the Japanese words that led to it"
    prompt = browser.find_element(By.CSS_SELECTOR, "#sotai-prompt textarea, #sotai-prompt input").get_attribute("value")
    assert prompt and prompt.split(",")[0].strip() in tags
    browser.save_screenshot(str(out_dir / "gateway-ui.png"))
    assert (out_dir / "gateway-ui.png").stat().st_size > 10_000


def _edited(browser) -> list[str]:
    from selenium.webdriver.common.by import By

    value = browser.find_element(By.CSS_SELECTOR, "#sotai-edited textarea, #sotai-edited input").get_attribute("value")
    return [t.strip() for t in value.split(",") if t.strip()]


def test_tags_are_edited_before_painting(browser, gateway, out_dir):
    """「タグ生成」: the selected tags with reasons; remove one, add a suggestion and a typed tag, move
    one up; 「生成開始」 paints from exactly that list (Dart completes it)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(gateway.url + "/")
    box = WebDriverWait(browser, 60).until(lambda d: d.find_element(By.CSS_SELECTOR, "#sotai-text textarea"))
    box.send_keys(SCENE)
    browser.find_element(By.ID, "sotai-make-tags").click()
    labels = WebDriverWait(browser, 120).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, "#sotai-edit-tags label") or None)
    shown = [label.text for label in labels]
    assert all("—" in s for s in shown), f"every selected tag shows its reason: {shown}"
    assert any("→" in s for s in shown)
    first = _edited(browser)
    assert first and first[0] == "1girl", first

    removed = first[-1]
    labels[-1].click()  # uncheck: removed from the list, back among the suggestions
    WebDriverWait(browser, 30).until(lambda d: removed not in _edited(d))
    offered = WebDriverWait(browser, 30).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, "#sotai-suggestions label") or None)
    assert offered[0].text.split(" — ")[0] == removed  # an unchecked tag is one click from coming back
    suggestion = offered[1]
    added = suggestion.text.split(" — ")[0]
    suggestion.click()  # one click adds it
    WebDriverWait(browser, 30).until(lambda d: added in _edited(d))
    add = browser.find_element(By.CSS_SELECTOR, "#sotai-add-tag textarea, #sotai-add-tag input")
    add.send_keys("holding_umbrella", Keys.ENTER)
    WebDriverWait(browser, 30).until(lambda d: _edited(d)[-1:] == ["holding_umbrella"])
    move = browser.find_element(By.CSS_SELECTOR, "#sotai-move-tag input")
    move.click()
    move.send_keys("holding_umbrella")
    WebDriverWait(browser, 10).until(lambda d: d.find_elements(By.CSS_SELECTOR, "ul[role=listbox] li"))
    move.send_keys(Keys.ENTER)
    browser.find_element(By.ID, "sotai-move-up").click()
    WebDriverWait(browser, 30).until(lambda d: _edited(d)[-2:-1] == ["holding_umbrella"])
    final_list = _edited(browser)

    browser.find_element(By.ID, "sotai-generate").click()
    WebDriverWait(browser, 180).until(
        lambda d: [i for i in d.find_elements(By.CSS_SELECTOR, "#sotai-gallery img") if i.get_attribute("src")])
    WebDriverWait(browser, 30).until(lambda d: "完了" in d.find_element(By.ID, "sotai-status").text)
    prompt = browser.find_element(By.CSS_SELECTOR, "#sotai-prompt textarea, #sotai-prompt input").get_attribute("value")
    painted = [t.strip() for t in prompt.split(",")]
    given = painted[:len(final_list)]
    assert sorted(given) == sorted(t.replace("_", " ") for t in final_list), (given, final_list)
    assert removed not in final_list and added in final_list
    assert "指定タグ" in browser.find_element(By.ID, "sotai-tags").text
    browser.save_screenshot(str(out_dir / "gateway-ui-edit.png"))


def test_a_dropped_picture_is_painted_over(browser, gateway, out_dir, tmp_path):
    """img2img from the page: a picture put into 「元画像」 travels as the init image; the painted PNG says
    "Denoising strength" (written only for img2img and hires) at the slider's value."""
    import io
    import urllib.request

    from PIL import Image
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    picture = tmp_path / "init.png"
    Image.new("RGB", (96, 64), (220, 40, 40)).save(picture)
    browser.get(gateway.url + "/")
    box = WebDriverWait(browser, 60).until(lambda d: d.find_element(By.CSS_SELECTOR, "#sotai-text textarea"))
    box.send_keys(SCENE)
    browser.find_element(By.XPATH, "//button[contains(., 'img2img')]").click()
    upload = WebDriverWait(browser, 30).until(
        lambda d: d.find_element(By.CSS_SELECTOR, "#sotai-init-image input[type=file]"))
    upload.send_keys(str(picture))
    WebDriverWait(browser, 60).until(
        lambda d: [i for i in d.find_elements(By.CSS_SELECTOR, "#sotai-init-image img") if i.get_attribute("src")])
    browser.find_element(By.ID, "sotai-generate").click()
    images = WebDriverWait(browser, 180).until(
        lambda d: [i for i in d.find_elements(By.CSS_SELECTOR, "#sotai-gallery img") if i.get_attribute("src")])
    WebDriverWait(browser, 30).until(lambda d: "完了" in d.find_element(By.ID, "sotai-status").text)
    with urllib.request.urlopen(images[0].get_attribute("src"), timeout=30) as response:
        painted = Image.open(io.BytesIO(response.read()))
    assert painted.size == (512, 512)
    assert "Denoising strength: 0.75" in painted.info.get("parameters", ""), painted.info
    browser.save_screenshot(str(out_dir / "gateway-ui-img2img.png"))
