"""The storefront in a real headless browser (Debian's Chromium through chromedriver, selenium):
what a shopper does, step by step, with a screenshot of each step in test-reports/storefront/.

Every step is checked against the real services: results come from OpenSearch, clicks are found
in ``ubi_events`` with the search's query id and the position clicked.
"""

from __future__ import annotations

import pytest

from .conftest import ADMIN_TOKEN, DATA
from .storefront_fixtures import RUNNER, FORMAL, ids_of, screenshot, stored_events, wait_for
from .storefront_fixtures import browser, internal_web, shoppers, slow_encoder_web, store, storefront_rows, web  # noqa: F401 (fixtures)

WAIT = 90


def by(kind: str):
    from selenium.webdriver.common.by import By  # heavy optional: selenium only in the browser tests
    return getattr(By, kind)


def until(driver, check, what: str, seconds: float = WAIT):
    from selenium.common.exceptions import StaleElementReferenceException  # heavy optional: as above
    from selenium.webdriver.support.ui import WebDriverWait  # heavy optional: as above
    return WebDriverWait(driver, seconds, poll_frequency=0.2, ignored_exceptions=(StaleElementReferenceException,)).until(
        lambda d: check(d), message=what)


def open_store(driver, web, store, user=None):
    driver.get(f"{web}/?catalogue={store}")
    until(driver, lambda d: d.find_element(by("TAG_NAME"), "body").get_attribute("data-ready") == "true", "the page to start")
    choose_shopper(driver, user or page_state(driver, "state.visitor"))  # the tab may remember another


def choose_shopper(driver, user):
    from selenium.webdriver.support.ui import Select  # heavy optional: as above
    Select(driver.find_element(by("ID"), "shopper")).select_by_value(user)


def search_box(driver):
    return driver.find_element(by("ID"), "q")


def type_query(driver, text: str):
    from selenium.webdriver.common.keys import Keys  # heavy optional: as above
    box = search_box(driver)
    box.clear()
    box.send_keys(text + Keys.ENTER)  # no suggestion is chosen: Enter submits the words typed


def result_ids(driver) -> list[str]:
    """The ids of the cards shown, read in one go (the grid may be redrawn between two reads)."""
    return driver.execute_script("return Array.from(document.querySelectorAll('#grid .card'), c => c.dataset.id);")


def wait_for_results(driver, before=None, what="results"):
    """Wait until the grid shows results (different from ``before`` when given) and return their ids."""
    def ready(d):
        ids = result_ids(d)
        status = d.find_element(by("ID"), "status").text
        return ids if ids and "results" in status and ids != before else None
    return until(driver, ready, what)


def page_state(driver, expr: str):
    return driver.execute_script(f"return {expr};")


def test_a_typed_query_shows_results_with_their_pictures(browser, web, store):
    open_store(browser, web, store)
    type_query(browser, "shoes")
    ids = wait_for_results(browser)
    until(browser, lambda d: d.execute_script(
        "return Array.from(document.querySelectorAll('#grid img')).slice(0, 4).every(i => i.complete && i.naturalWidth > 0);"),
        "the first pictures to load")
    cards = browser.find_elements(by("CSS_SELECTOR"), "#grid .card")
    assert len(ids) == 24 and all(c.find_element(by("CLASS_NAME"), "title").text for c in cards)
    assert "shoe" in cards[0].find_element(by("CLASS_NAME"), "meta").text.lower()
    assert browser.find_elements(by("CSS_SELECTOR"), "#facets ul[data-facet=category] button")
    screenshot(browser, "01-results")


def test_a_facet_narrows_the_results_to_its_value(browser, web, store):
    open_store(browser, web, store)
    type_query(browser, "shoes")
    before = wait_for_results(browser)
    choice = browser.find_element(by("CSS_SELECTOR"), "#facets ul[data-facet=category] li:nth-child(2) button")
    value, count = choice.get_attribute("data-value"), int(choice.find_element(by("CLASS_NAME"), "count").text)
    choice.click()
    ids = wait_for_results(browser, before, "the narrowed results")
    metas = [m.text.lower() for m in browser.find_elements(by("CSS_SELECTOR"), "#grid .card .meta")]
    assert len(ids) == min(count, 24) and all(m.startswith(value) for m in metas)
    assert browser.find_element(by("CSS_SELECTOR"), "#chosen button[data-filter=category]")
    screenshot(browser, "02-facet")


def test_a_click_is_logged_with_the_query_id_and_position_and_opens_the_product_page(browser, web, store, client,
                                                                                    settings, shoppers):
    open_store(browser, web, store)
    type_query(browser, "watch")
    ids = wait_for_results(browser)
    query_id = page_state(browser, "state.last.query_id")
    browser.find_elements(by("CSS_SELECTOR"), "#grid .card")[2].click()
    until(browser, lambda d: d.find_element(by("ID"), "product-title").text, "the product page")
    until(browser, lambda d: d.find_elements(by("CSS_SELECTOR"), "#similar .card"), "similar items")
    clicks = wait_for(lambda: stored_events(client, settings, query_id=query_id, action_name="click"),
                      what="the click in ubi_events")
    assert [(c["object_id"], c["position"], c["catalogue"]) for c in clicks] == [(ids[2], 3, store)]
    similar = [c.get_attribute("data-id") for c in browser.find_elements(by("CSS_SELECTOR"), "#similar .card")]
    assert ids[2] not in similar
    browser.find_element(by("ID"), "add-to-cart").click()
    until(browser, lambda d: "Added" in d.find_element(by("ID"), "cart-status").text, "the cart to say so")
    carts = wait_for(lambda: stored_events(client, settings, query_id=query_id, action_name="add_to_cart"),
                     what="the add-to-cart in ubi_events")
    assert [(c["object_id"], c["position"]) for c in carts] == [(ids[2], 3)]
    screenshot(browser, "03-product")


def test_a_product_bought_with_another_shows_under_bought_together(browser, web, store, shoppers):
    first, second = shoppers[RUNNER][:2]  # bought by the same shopper on the same day
    open_store(browser, web, store)
    browser.get(f"{web}/?catalogue={store}#item/{first}")
    until(browser, lambda d: d.find_elements(by("CSS_SELECTOR"), "#also-bought .card"), "bought-together items")
    together = [c.get_attribute("data-id") for c in browser.find_elements(by("CSS_SELECTOR"), "#also-bought .card")]
    assert second in together and first not in together


def test_switching_shopper_changes_the_order_by_their_history(browser, web, store, shoppers):
    open_store(browser, web, store, RUNNER)
    type_query(browser, "shoes")
    runner = wait_for_results(browser)
    assert "Sam" in browser.find_element(by("ID"), "shopper-about").text
    screenshot(browser, "04-shopper-runner")
    choose_shopper(browser, FORMAL)
    formal = wait_for_results(browser, runner, "the other shopper's results")
    assert runner[:8] != formal[:8]
    assert set(shoppers[RUNNER]) & set(runner[:6]) and set(shoppers[FORMAL]) & set(formal[:6])
    screenshot(browser, "05-shopper-formal")


def test_a_photo_upload_shows_products_that_look_like_it(browser, web, store, storefront_rows):
    handbag = ids_of(storefront_rows, "Handbags")[5]
    open_store(browser, web, store)
    browser.find_element(by("ID"), "photo").send_keys(str(DATA / "fashion" / "images" / f"{handbag}.jpg"))
    until(browser, lambda d: "photo" in d.find_element(by("ID"), "status").text and result_ids(d), "photo results")
    ids = result_ids(browser)
    metas = [m.text.lower() for m in browser.find_elements(by("CSS_SELECTOR"), "#grid .card .meta")][:8]
    assert handbag in ids[:3] and sum(m.startswith("handbags") for m in metas) >= 4
    assert browser.find_element(by("ID"), "photo-query").is_displayed()
    screenshot(browser, "06-photo")


def test_suggestions_are_chosen_with_the_keyboard(browser, web, store):
    from selenium.webdriver.common.keys import Keys  # heavy optional: as above
    open_store(browser, web, store)
    box = search_box(browser)
    box.send_keys("formal sh")
    items = until(browser, lambda d: len(d.find_elements(by("CSS_SELECTOR"), "#suggestions li")) >= 2
                  and d.find_elements(by("CSS_SELECTOR"), "#suggestions li"), "two suggestions")
    texts = [li.get_attribute("data-text") for li in items]
    box.send_keys(Keys.ARROW_DOWN)
    box.send_keys(Keys.ARROW_DOWN)
    active = browser.find_element(by("CSS_SELECTOR"), "#suggestions li.active")
    assert active.get_attribute("data-text") == texts[1] and box.get_attribute("aria-activedescendant") == active.get_attribute("id")
    screenshot(browser, "07-suggestions")
    box.send_keys(Keys.ENTER)
    wait_for_results(browser)
    assert box.get_attribute("value") == texts[1] and page_state(browser, "state.q") == texts[1]
    assert browser.find_element(by("ID"), "suggestions").is_displayed() is False


def test_the_admin_page_shows_the_catalogue_once_given_the_token(browser, internal_web, store):
    browser.get(f"{internal_web}/storefront/admin")
    until(browser, lambda d: d.find_element(by("TAG_NAME"), "body").get_attribute("data-ready") == "true", "the admin page")
    assert not browser.find_element(by("ID"), "overview").is_displayed()
    browser.find_element(by("ID"), "token").send_keys("wrong-token")
    browser.find_element(by("CSS_SELECTOR"), "#login button").click()
    until(browser, lambda d: "Refused" in d.find_element(by("ID"), "login-status").text, "the refusal")
    token = browser.find_element(by("ID"), "token")
    token.clear()
    token.send_keys(ADMIN_TOKEN)
    browser.find_element(by("CSS_SELECTOR"), "#login button").click()
    until(browser, lambda d: store in d.find_element(by("ID"), "catalogues").text, "the catalogue table")
    screenshot(browser, "08-admin")
    browser.execute_script("sessionStorage.clear();")


def test_a_misspelt_query_says_what_was_searched_instead(browser, web, store):
    open_store(browser, web, store)
    type_query(browser, "sandels")
    wait_for_results(browser)
    notice = browser.find_element(by("ID"), "notice")
    assert notice.is_displayed() and "Did you mean" in notice.text and "sandals" in notice.text
    assert not browser.find_element(by("ID"), "degraded").is_displayed()
    metas = [m.text.lower() for m in browser.find_elements(by("CSS_SELECTOR"), "#grid .card .meta")][:5]
    assert all(m.startswith("sandals") for m in metas)
    screenshot(browser, "09-did-you-mean")


def test_a_degraded_search_says_so_plainly(browser, slow_encoder_web, store):
    open_store(browser, slow_encoder_web, store)
    type_query(browser, "brown leather formal shoes")
    wait_for_results(browser)
    degraded = browser.find_element(by("ID"), "degraded")
    assert degraded.is_displayed() and "Degraded" in degraded.text and "keyword (BM25) results only" in degraded.text
    screenshot(browser, "10-degraded")
