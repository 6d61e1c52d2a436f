import pytest

from shared import geo


@pytest.mark.parametrize(
    ("postal_code", "department", "commune"),
    [
        ("56000", "56", "Vannes"),
        ("29200", "29", "Brest"),
        ("20000", "2A", "Ajaccio"),
        ("20200", "2B", "Bastia"),
        ("97110", "971", "Pointe-à-Pitre"),
        ("97200", "972", "Fort-de-France"),
        ("97300", "973", "Cayenne"),
        ("97400", "974", "Saint-Denis"),
        ("97600", "976", "Mamoudzou"),
        ("75001", "75", "Paris 1er Arrondissement"),
        (" 13001 ", "13", "Marseille 1er Arrondissement"),
    ],
)
def test_every_kind_of_postal_code_resolves_to_its_department(postal_code, department, commune):
    area = geo.postal_area(postal_code)
    assert area.department == department
    assert area.main_commune.name == commune
    assert -90 <= area.latitude <= 90 and -180 <= area.longitude <= 180


def test_every_department_is_known_with_its_region():
    platform_departments = {f"{n:02d}" for n in range(1, 96) if n != 20} | {
        "2A",
        "2B",
        "971",
        "972",
        "973",
        "974",
        "976",
    }
    assert platform_departments <= {d.code for d in geo.departments()}
    assert len(platform_departments) == 101
    assert geo.department("56").region == "Bretagne"
    assert geo.department("2a").name == "Corse-du-Sud"


def test_a_postal_code_shared_by_several_communes_lists_them_all():
    area = geo.postal_area("20200")
    assert len(area.communes) > 1
    assert area.commune("ville-di-pietrabugno").name == "Ville-di-Pietrabugno"
    assert area.commune("nowhere") == area.main_commune


@pytest.mark.parametrize("postal_code", ["", "5600", "560000", "2A000", "abcde"])
def test_malformed_postal_codes_are_refused(postal_code):
    with pytest.raises(geo.InvalidPostalCode):
        geo.postal_area(postal_code)


@pytest.mark.parametrize("postal_code", ["00000", "75700", "99999", "98800"])
def test_cedex_and_unknown_postal_codes_are_refused(postal_code):
    with pytest.raises(geo.UnknownPostalCode):
        geo.postal_area(postal_code)


def test_great_circle_distances():
    paris, marseille = geo.postal_area("75001"), geo.postal_area("13001")
    assert geo.distance_km(paris.latitude, paris.longitude, marseille.latitude, marseille.longitude) == pytest.approx(
        661, abs=10
    )
    assert geo.distance_km(47.6, -2.7, 47.6, -2.7) == 0
    assert geo.distance_km(0, 0, 0, 180) == pytest.approx(20015, abs=1)
